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
from collections import defaultdict

# The names asyncscale gives what it owns (crates/core/src/names.rs).
TARGET_TRACKING_POLICY = "asyncscale-target-tracking"
SCALE_FROM_ZERO_POLICY = "asyncscale-scale-from-zero"
MANAGED_BY_TAG = "asyncscale.io/managed-by"
OWNER_TAG = "asyncscale.io/owner"


def alarm_name(resource_id: str) -> str:
    return f"asyncscale-{resource_id}-HasBacklogWithoutCapacity"


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
    the Lease, as R last renewed it at `r <= t`, named R and had not expired: `t <= r + lease`.
    R itself stops writing at `r + renew_deadline` (two thirds of the lease); the rest of the
    lease, a third of it (5 s of 15 s), is the margin for a write sent before that deadline and
    answered after it. A standby may take the Lease only after `r + lease`, so a write inside the
    margin never overlaps another holder's term.
    """

    name = "one writer"

    def __init__(self, replicas: set[str], lease_seconds: float):
        self.replicas = replicas
        self.lease = lease_seconds
        # replica -> sorted renew times seen while it was the holder.
        self.renewals: dict[str, list[float]] = defaultdict(list)
        self.holder_at: list[tuple[float, str]] = []
        self.writes_checked = 0

    def lease_seen(self, holder: str, renew_time: float) -> None:
        times = self.renewals[holder]
        if not times or renew_time > times[-1]:
            times.append(renew_time)
        elif renew_time not in times:
            bisect.insort(times, renew_time)
        if not self.holder_at or self.holder_at[-1][1] != holder:
            self.holder_at.append((renew_time, holder))

    def replica_of(self, entry: dict) -> str | None:
        for key in (entry.get("key"), entry.get("sourceKey")):
            if key in self.replicas:
                return key
        return None

    def calls(self, entries: list[dict]) -> list[Violation]:
        found = []
        for e in entries:
            # STS hands out credentials; it changes nothing asyncscale is fenced for.
            if not e.get("write") or e.get("service") == "sts":
                continue
            replica = self.replica_of(e)
            if replica is None:
                continue
            self.writes_checked += 1
            t = e["answeredAt"]
            times = self.renewals.get(replica, [])
            i = bisect.bisect_right(times, t)
            last = times[i - 1] if i else None
            if last is not None and t <= last + self.lease:
                continue
            holder = next((h for (at, h) in reversed(self.holder_at) if at <= t), "nobody")
            since = f"{t - last:.1f}s after its last renewal" if last is not None else "never held"
            found.append(
                Violation(
                    self.name,
                    t,
                    f"{e['service']} {e['operation']} {e.get('names', '')} answered with "
                    f"{replica}'s keys, {since} (Lease {self.lease:.0f}s; holder then: {holder})",
                )
            )
        return found


class QuotaShare:
    """Trap 2: under Share the MaxCapacity of the managed endpoints of a quota, plus what other
    endpoints use, stays within the quota; no scaling activity fails for the quota.

    Two kinds of moment are outside asyncscale's hands, and each opens a window that lasts until
    the sum fits again (every window's length is reported):
    - the soak lowers a quota below what is in use (limit `window_limit`: the quota re-read
      and the resyncs that follow);
    - other endpoints' instances grow (an endpoint created with its initial instance, one
      re-created behind asyncscale's back): asyncscale sees it at the next refresh of its
      picture and lowers the caps at the resync after, so a sum over the quota within
      `reaction_limit` of the last growth is allowed (how long each lasted is reported).
    A sum over the quota outside these windows, or a window past its limit, is a violation."""

    name = "no quota over-commit"

    def __init__(self, window_limit: float, reaction_limit: float):
        self.window_limit = window_limit
        self.reaction_limit = reaction_limit
        self.windows: list[tuple[str, float]] = []  # closed lowering windows: (what, seconds)
        # Over-commits inside a reaction window, once they closed: (what, seconds over).
        self.reactions: list[tuple[str, float]] = []
        self.over_since: dict[tuple[str, str], float] = {}
        self.open_since: dict[tuple[str, str], float] = {}
        self.reaction_since: dict[tuple[str, str], float] = {}
        self.previous_other: dict[tuple[str, str], int] = {}
        self.seen_failures: set[str] = set()
        self.over: set[tuple[str, str]] = set()

    def quota_lowered(self, account: str, instance_type: str, now: float) -> None:
        self.open_since.setdefault((account, instance_type), now)

    def sums(
        self,
        now: float,
        quotas: dict[tuple[str, str], int],
        managed_max: dict[tuple[str, str], int],
        other_use: dict[tuple[str, str], int],
    ) -> list[Violation]:
        found = []
        for key, quota in quotas.items():
            managed, others = managed_max.get(key, 0), other_use.get(key, 0)
            total = managed + others
            what = f"{key[1]} in {key[0]}"
            # The first look is the baseline, not growth.
            if others > self.previous_other.get(key, others):
                # Each growth gives asyncscale the reaction limit from then on.
                self.reaction_since[key] = now
            self.previous_other[key] = others
            if key in self.open_since and total <= quota:
                self.windows.append((what, now - self.open_since.pop(key)))
            if total <= quota:
                if key in self.over_since:
                    self.reactions.append((what, now - self.over_since.pop(key)))
                self.over.discard(key)
                continue
            sums = f"MaxCapacity {managed} + other endpoints' {others} instances > quota {quota}"
            if key in self.open_since:
                since, limit, why = self.open_since[key], self.window_limit, "the lowered quota"
            elif now - self.reaction_since.get(key, float("-inf")) <= self.reaction_limit:
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
            if "quota" not in message.lower() and "ResourceLimitExceeded" not in message:
                continue
            key = (account, type_of.get(a.get("ResourceId", ""), "?"))
            if key in self.open_since or now - self.reaction_since.get(key, float("-inf")) <= self.reaction_limit:
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

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.endpoint}/variant/AllTraffic"


class Ownership:
    """Nothing lost, nothing left, foreign objects untouched, and trap 1:

    - a live resource, quiet for a resync, has its scalable target and target-tracking policy;
      at minCapacity 0 also the step policy and the alarm whose action is that policy (trap 1);
    - two resyncs after a resource is gone from the API server, nothing of asyncscale's for its
      endpoint is left in AWS (target tagged as ours, our policies, our alarm), unless another
      live resource now names that endpoint;
    - no write by a replica names a policy or scheduled action the soak made as a foreign tool.
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
        self.reported: set[tuple[str, str]] = set()

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
    ) -> list[Violation]:
        """`quiet_since`: when the last fault ended (now while one is on); `states`: the
        endpoint's /_sim/state by account; `effective_max`: status.effectiveMaxCapacity by key."""
        found = []
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
            if r.deleted_at is None:
                settled = max(r.changed_at, quiet_since) + self.resync + self.grace
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
                        f"{now - max(r.changed_at, quiet_since):.0f}s after its last change or fault",
                    )
                if r.min_capacity == 0 and effective_max.get(r.key) not in (None, 0):
                    step = policies.get((rid, SCALE_FROM_ZERO_POLICY))
                    alarm = alarms.get(alarm_name(rid))
                    wired = (
                        step is not None
                        and alarm is not None
                        and step.get("PolicyARN") in (alarm.get("AlarmActions") or [])
                    )
                    if not wired:
                        what = (
                            "no step policy" if step is None
                            else "no alarm" if alarm is None
                            else "an alarm whose actions do not name the step policy"
                        )
                        found += self._once(
                            self.trap1, r.key, now,
                            f"{r.key} ({rid} in {r.account}) at minCapacity 0 has {what}",
                        )
            else:
                if now < max(r.deleted_at, quiet_since) + 2 * self.resync + self.grace:
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

    def calls(self, entries: list[dict]) -> list[Violation]:
        found = []
        for e in entries:
            if not e.get("write"):
                continue
            if e.get("key") not in self.replicas and e.get("sourceKey") not in self.replicas:
                continue
            names = e.get("names", "")
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


class Recovery:
    """After the last fault of a burst ends, every resource is Ready within two resyncs."""

    name = "recovery"

    def __init__(self, resync: float):
        self.limit = 2 * resync
        self.waiting_since: float | None = None
        self.longest = 0.0
        self.recoveries: list[float] = []
        self.reported = False

    def burst_ended(self, now: float) -> None:
        self.waiting_since = now
        self.reported = False

    def burst_started(self) -> None:
        self.waiting_since = None

    def ready(self, now: float, not_ready: list[str]) -> list[Violation]:
        if self.waiting_since is None:
            return []
        waited = now - self.waiting_since
        if not not_ready:
            self.recoveries.append(waited)
            self.longest = max(self.longest, waited)
            self.waiting_since = None
            return []
        if waited > self.limit and not self.reported:
            self.reported = True
            self.longest = max(self.longest, waited)
            return [
                Violation(
                    self.name,
                    now,
                    f"{len(not_ready)} resource(s) not Ready {waited:.0f}s after the last fault "
                    f"ended (limit {self.limit:.0f}s): {', '.join(sorted(not_ready)[:5])}",
                )
            ]
        return []


class Visits:
    """No stuck resource: while nothing disturbs the cluster, each live resource is reconciled
    at least once a resync (plus a grace for the requeue's own delay)."""

    name = "no stuck resource"

    def __init__(self, resync: float, grace: float):
        self.limit = resync + grace
        self.last: dict[str, float] = {}
        self.reported: set[str] = set()

    def visited(self, key: str, at: float) -> None:
        if at > self.last.get(key, 0.0):
            self.last[key] = at
            self.reported.discard(key)

    def check(self, now: float, quiet_since: float, live: dict[str, float]) -> list[Violation]:
        """`live`: key -> when it was created (or last changed)."""
        found = []
        for key, since in live.items():
            start = max(quiet_since, since, self.last.get(key, 0.0))
            if now - start > self.limit and key not in self.reported:
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
    """Controller RSS after warm-up grows less than `limit` (10 %) over a process's life."""

    name = "memory"

    def __init__(self, warmup: float, min_judged: float, limit: float = 0.10):
        self.warmup = warmup
        self.min_judged = min_judged
        self.limit = limit
        # pid -> (label, started, [(t, rss)])
        self.samples: dict[int, tuple[str, float, list[tuple[float, int]]]] = {}

    def sample(self, pid: int, label: str, started: float, now: float, rss: int) -> None:
        entry = self.samples.setdefault(pid, (label, started, []))
        entry[2].append((now, rss))

    def judge(self) -> tuple[list[Violation], list[str]]:
        found, lines = [], []
        for pid, (label, started, samples) in self.samples.items():
            warm = [(t, r) for (t, r) in samples if t - started >= self.warmup]
            if len(warm) < 2:
                continue
            (t0, r0), (t1, r1) = warm[0], warm[-1]
            growth = (r1 - r0) / r0 if r0 else 0.0
            judged = t1 - t0 >= self.min_judged
            lines.append(
                f"{label} (pid {pid}): RSS {r0 / 1e6:.1f} MB after warm-up, {r1 / 1e6:.1f} MB "
                f"{t1 - t0:.0f}s later ({growth:+.1%}){'' if judged else ', too short to judge'}"
            )
            if judged and growth > self.limit:
                found.append(
                    Violation(self.name, t1, f"{label} RSS grew {growth:.1%} over {t1 - t0:.0f}s")
                )
        return found, lines
