"""The soak's invariant checks (tests/soak/invariants.py) on made-up histories: each one must
fire on the violation it exists for, and stay quiet on the history that is allowed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))
import invariants as inv  # noqa: E402

RID = "endpoint/e1/variant/AllTraffic"


def write(key, at, source=None, names=f"ResourceId={RID}"):
    return {"key": key, "sourceKey": source, "answeredAt": at, "write": True,
            "service": "application-autoscaling", "operation": "RegisterScalableTarget", "names": names}


def test_one_writer_allows_the_holders_term_and_the_margin_and_nothing_after():
    check = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    check.lease_seen("replica-a", 100.0)
    check.lease_seen("replica-a", 102.0)
    assert check.calls([write("replica-a", 101.0), write("replica-a", 116.9)]) == []
    late = check.calls([write("replica-a", 117.5)])
    assert len(late) == 1 and "15.5s after its last renewal" in late[0].message
    # A replica that never held the Lease, through a role session it assumed.
    never = check.calls([write("ASIA1", 101.0, source="replica-b")])
    assert len(never) == 1 and "replica-b" in never[0].message and "never held" in never[0].message
    # Reads, STS and other keys are not the fence's business.
    read = dict(write("replica-b", 101.0), write=False)
    sts = dict(write("replica-b", 101.0), service="sts")
    assert check.calls([read, sts, write("foreign-tool", 101.0)]) == []


def test_one_writer_judges_each_write_by_the_renewal_before_it():
    check = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    check.lease_seen("replica-a", 100.0)
    check.lease_seen("replica-a", 110.0)
    check.lease_seen("replica-b", 130.0)
    check.lease_seen("replica-a", 200.0)
    # a's write at 120 is in a's term; b's at 131 in b's; a's at 140 after a's Lease expired.
    assert check.calls([write("replica-a", 120.0), write("replica-b", 131.0)]) == []
    assert len(check.calls([write("replica-a", 140.0)])) == 1


def test_quota_share_fires_outside_windows_and_reports_windows():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    key = ("123456789012", "ml.g5.xlarge")
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    over = check.sums(1, {key: 10}, {key: 9}, {key: 2})
    assert len(over) == 1 and "MaxCapacity 9 + other endpoints' 2 instances > quota 10" in over[0].message
    assert check.sums(2, {key: 10}, {key: 9}, {key: 2}) == [], "reported once per episode"
    assert check.sums(3, {key: 10}, {key: 8}, {key: 2}) == []
    # The soak lowers the quota: allowed until the limit, and the window is reported.
    check.quota_lowered(*key, now=10)
    assert check.sums(50, {key: 6}, {key: 8}, {key: 2}) == []
    assert check.sums(60, {key: 6}, {key: 4}, {key: 2}) == []
    assert check.windows == [("ml.g5.xlarge in 123456789012", 50)]
    check.quota_lowered(*key, now=100)
    late = check.sums(201, {key: 6}, {key: 8}, {key: 2})
    assert len(late) == 1 and "after the lowered quota (limit 100s)" in late[0].message


def test_a_lowering_window_stays_open_until_the_controller_can_have_read_the_quota():
    check = inv.QuotaShare(window_limit=500, reaction_limit=50, learn_limit=360)
    key = ("222222222222", "ml.g5.xlarge")
    assert check.sums(0, {key: 30}, {key: 26}, {key: 2}) == []
    check.quota_lowered(*key, now=10)
    # A delete brings the sum under the lowered quota: the window is reported...
    assert check.sums(60, {key: 28}, {key: 26}, {key: 2}) == []
    assert check.windows == [("ml.g5.xlarge in 222222222222", 50)]
    # ... but a raise into what the old value left, before the controller's next read of the
    # quota, is no violation.
    assert check.sums(160, {key: 28}, {key: 28}, {key: 2}) == []
    assert check.sums(300, {key: 28}, {key: 26}, {key: 2}) == []
    assert check.windows == [("ml.g5.xlarge in 222222222222", 50)], "reported once"
    # Once it could have read it, the window closes at the first fit, and a raise counts.
    assert check.sums(371, {key: 28}, {key: 26}, {key: 2}) == []
    over = check.sums(372, {key: 28}, {key: 27}, {key: 2})
    assert len(over) == 1 and "> quota 28" in over[0].message


def test_quota_share_gives_other_endpoints_growth_a_reaction_window():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    key = ("123456789012", "ml.g5.xlarge")
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    assert check.sums(1, {key: 10}, {key: 8}, {key: 3}) == [], "a new endpoint's instance"
    assert check.sums(40, {key: 10}, {key: 7}, {key: 3}) == []
    assert check.reactions == [("ml.g5.xlarge in 123456789012", 39)]
    assert check.sums(41, {key: 10}, {key: 8}, {key: 3}) == [], "still within 50 s of the growth"
    late = check.sums(52, {key: 10}, {key: 8}, {key: 3})
    assert len(late) == 1 and "other endpoints' growth" in late[0].message


def test_a_reaction_window_excuses_the_growth_only_and_waits_out_disturbances():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    key = ("123456789012", "ml.g5.xlarge")
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    assert check.sums(1, {key: 10}, {key: 8}, {key: 3}) == [], "growth: excused"
    # A leader change until 40 s: the limit counts from then.
    assert check.sums(80, {key: 10}, {key: 8}, {key: 3}, quiet_since=40) == []
    assert len(check.sums(91, {key: 10}, {key: 8}, {key: 3}, quiet_since=40)) == 1
    # A raise of asyncscale's own inside the window is not excused.
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    assert check.sums(1, {key: 10}, {key: 8}, {key: 3}) == []
    raised = check.sums(2, {key: 10}, {key: 9}, {key: 3})
    assert len(raised) == 1 and "caps alone are past the quota" in raised[0].message


def test_a_managed_endpoint_that_comes_back_is_no_growth():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    key = ("123456789012", "ml.g5.xlarge")
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    # Its resource kept an instance for it: the caps must already leave room.
    check.endpoint_returns(*key, now=5)
    assert check.sums(6, {key: 10}, {key: 8}, {key: 3}) != [], "no reaction window"
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    assert check.sums(0, {key: 10}, {key: 7}, {key: 2}) == []
    check.endpoint_returns(*key, now=5)
    assert check.sums(6, {key: 10}, {key: 7}, {key: 3}) == [], "it fits"
    # Another endpoint's growth beside it still gets its window.
    assert check.sums(7, {key: 10}, {key: 7}, {key: 4}) == []
    # A return never seen as growth (its target registered between two looks) is forgotten.
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    assert check.sums(0, {key: 10}, {key: 8}, {key: 2}) == []
    check.endpoint_returns(*key, now=5)
    assert check.sums(6, {key: 10}, {key: 8}, {key: 2}) == []
    assert check.sums(60, {key: 10}, {key: 8}, {key: 3}) == [], "later growth: a window"


def test_a_quota_failure_that_started_in_a_reaction_window_is_the_growths():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    key = ("123456789012", "ml.g5.xlarge")
    types = {RID: "ml.g5.xlarge"}
    check.sums(0, {key: 10}, {key: 8}, {key: 2})
    check.sums(10, {key: 10}, {key: 8}, {key: 3})  # growth: a window opens at 10
    check.sums(30, {key: 10}, {key: 7}, {key: 3})  # lowered: it closes at 30
    failed = {"ResourceId": RID, "StatusMessage": "The account-level service limit is 10"}
    # Seen a round after the window closed: the growth's; seen later: asyncscale's.
    inside = check.failed_activities(31, "123456789012", [dict(failed, ActivityId="a")], types)
    after = check.failed_activities(45, "123456789012", [dict(failed, ActivityId="b")], types)
    assert inside == [] and len(after) == 1


def test_quota_failures_in_activities_fire_once_and_not_in_a_window():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    failed = [{"ActivityId": "a1", "ResourceId": RID, "StatusMessage": "Failed to set desired instance count: ResourceLimitExceeded: quota"}]
    types = {RID: "ml.g5.xlarge"}
    assert len(check.failed_activities(5, "123456789012", failed, types)) == 1
    assert check.failed_activities(6, "123456789012", failed, types) == []
    check.quota_lowered("123456789012", "ml.g5.xlarge", 7)
    again = [dict(failed[0], ActivityId="a2")]
    assert check.failed_activities(8, "123456789012", again, types) == []


def resource(**kw):
    base = dict(key="soak/r1", account="123456789012", endpoint="e1", instance_type="ml.g5.xlarge",
                min_capacity=0, changed_at=0.0)
    base.update(kw)
    return inv.Resource(**base)


def state(step=True, alarm=True, wired=True, target=True, tags=True):
    arn = "arn:policy/step"
    st = {"ScalableTargets": [], "ScalingPolicies": [
        {"ResourceId": RID, "PolicyName": inv.TARGET_TRACKING_POLICY, "PolicyARN": "arn:tt"}], "MetricAlarms": []}
    if target:
        st["ScalableTargets"].append({"ResourceId": RID, "MaxCapacity": 2,
                                      "Tags": {inv.MANAGED_BY_TAG: "asyncscale"} if tags else {}})
    if step:
        st["ScalingPolicies"].append({
            "ResourceId": RID, "PolicyName": inv.SCALE_FROM_ZERO_POLICY, "PolicyARN": arn,
            "PolicyType": "StepScaling", "Configuration": {
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}})
    if alarm:
        st["MetricAlarms"].append({
            "AlarmName": inv.alarm_name(RID), "AlarmActions": [arn] if wired else [],
            "ActionsEnabled": True, "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity",
            "Dimensions": [{"Name": "EndpointName", "Value": "e1"}], "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing"})
    return {"123456789012": st}


def test_trap_one_and_nothing_lost_wait_for_a_quiet_resync_then_fire():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    r = resource()
    assert check.state(100, 0, [r], state(), {"soak/r1": 2}) == []
    assert check.state(20, 0, [r], state(wired=False), {"soak/r1": 2}) == [], "not settled yet"
    unwired = check.state(100, 0, [r], state(wired=False), {"soak/r1": 2})
    assert [v.invariant for v in unwired] == [inv.Ownership.trap1]
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    assert check.state(100, 0, [r], state(alarm=False), {"soak/r1": 0}) == [], "share 0: nothing to wake"
    lost = check.state(100, 0, [r], state(target=False), {"soak/r1": 2})
    assert inv.Ownership.lost in [v.invariant for v in lost]


def test_nothing_left_two_resyncs_after_a_delete():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    gone = resource(deleted_at=100.0)
    # Two resyncs, each up to a tenth longer, and the grace: 176.
    assert check.state(175, 0, [gone], state(), {}) == []
    left = check.state(177, 0, [gone], state(), {})
    assert [v.invariant for v in left] == [inv.Ownership.left]
    assert "scalable target" in left[0].message and "alarm" in left[0].message
    clean = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    st = state(step=False, alarm=False, tags=False)
    st["123456789012"]["ScalingPolicies"] = []
    assert clean.state(171, 0, [gone], st, {}) == [], "an untagged target is not ours"


def test_foreign_objects_touched_by_a_replica_fire():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    touched = write("replica-a", 5.0, names=f"ResourceId={RID} PolicyName=foreign-step-1")
    by_tool = write("foreign-tool", 5.0, names=f"ResourceId={RID} PolicyName=foreign-step-1")
    assert len(check.calls([touched, by_tool])) == 1
    # Deregistering a target that holds them deletes them too.
    deregister = dict(write("replica-a", 6.0, names=f"ResourceId={RID}"), operation="DeregisterScalableTarget")
    assert check.calls([deregister]) == [], "nothing foreign on it"
    check.foreign_planted(RID)
    assert len(check.calls([deregister])) == 1
    check.foreign_gone(RID)
    assert check.calls([deregister]) == [], "the soak deleted its endpoint: AWS took them"


def test_a_resource_waiting_for_the_quota_is_judged_a_resync_after_its_wait():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    fresh = inv.Resource(key="soak/r1", account="123456789012", endpoint="e", instance_type="ml.g5.xlarge",
                         min_capacity=1, changed_at=100.0)
    empty = {"123456789012": {"ScalableTargets": [], "ScalingPolicies": [], "MetricAlarms": []}}
    # Minutes of waiting for instances others hold: nothing is written, nothing is lost.
    assert check.state(141, 0, [fresh], empty, {}, waiting={"soak/r1"}) == []
    assert check.state(300, 0, [fresh], empty, {}, waiting={"soak/r1"}) == []
    # Out of the wait, it has a resync (a tenth more at the longest, and the grace) to register.
    assert check.state(342, 0, [fresh], empty, {}) == []
    late = check.state(344, 0, [fresh], empty, {})
    assert len(late) == 1 and "44s after its last change, fault or wait for the quota" in late[0].message
    # Waiting with a target (a share of 0: MaxCapacity 0) is no excuse for a lost policy.
    shared_out = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    rid = "endpoint/e/variant/AllTraffic"
    target_only = {"123456789012": {"ScalableTargets": [{"ResourceId": rid, "MaxCapacity": 0}],
                                    "ScalingPolicies": [], "MetricAlarms": []}}
    assert len(shared_out.state(144, 0, [fresh], target_only, {}, waiting={"soak/r1"})) == 1
    other = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    assert len(other.state(144, 0, [fresh], empty, {})) == 1


def test_recovery_and_visits_and_memory():
    recovery = inv.Recovery(resync=30)
    recovery.burst_ended(100)
    # Two resyncs of 30 s, each up to a tenth longer.
    assert recovery.ready(166, ["soak/r1"]) == []
    assert len(recovery.ready(167, ["soak/r1"])) == 1
    recovery.burst_ended(200)
    assert recovery.ready(210, []) == [] and recovery.recoveries[-1] == 10
    # A quota dip's endpoints are excused for a while: they hold the recovery open, and are
    # judged once the excuse ends.
    recovery.burst_ended(300)
    assert recovery.ready(400, ["soak/r1"], frozenset({"soak/r1"})) == []
    assert recovery.waiting_since == 300, "still waiting for r1"
    late = recovery.ready(401, ["soak/r1"])
    assert len(late) == 1 and "101s after" in late[0].message

    visits = inv.Visits(resync=30, grace=10)
    visits.visited("soak/r1", 100)
    visits.finished("soak/r1", 100)
    # A resync of 30 s moves by up to a tenth: due by 33 s, plus the grace.
    assert visits.check(142, 0, {"soak/r1": 0}) == []
    assert len(visits.check(144, 0, {"soak/r1": 0})) == 1
    assert visits.check(144, 120, {"soak/r1": 0}) == [], "reported once"
    fresh = inv.Visits(resync=30, grace=10)
    assert fresh.check(144, 120, {"soak/r1": 0}) == [], "a fault ended at 120"
    # A long visit is not a missing one, until it runs past the longest a visit may take.
    slow = inv.Visits(resync=30, grace=10, longest=130)
    slow.visited("soak/r1", 100)
    assert slow.check(200, 0, {"soak/r1": 0}) == []
    slow.finished("soak/r1", 200)
    assert slow.check(242, 0, {"soak/r1": 0}) == []
    assert len(slow.check(244, 0, {"soak/r1": 0})) == 1
    # A failed visit is due when the controller said it would retry, if that is later (the
    # CI soak at fba6796: four failures in an AWS burst, the next try 39.5 s later).
    backing_off = inv.Visits(resync=20, grace=10)
    backing_off.visited("soak/r1", 100)
    backing_off.finished("soak/r1", 100)
    backing_off.failed("soak/r1", 100, 39.5)
    assert backing_off.check(149, 0, {"soak/r1": 0}) == []
    assert len(backing_off.check(150, 0, {"soak/r1": 0})) == 1
    retried = inv.Visits(resync=20, grace=10)
    retried.failed("soak/r1", 100, 39.5)
    retried.visited("soak/r1", 140)
    retried.finished("soak/r1", 140)
    assert retried.check(171, 0, {"soak/r1": 0}) == []
    assert len(retried.check(173, 0, {"soak/r1": 0})) == 1, "the retry came: a resync again"
    hung = inv.Visits(resync=30, grace=10, longest=130)
    hung.visited("soak/r1", 100)
    assert len(hung.check(231, 0, {"soak/r1": 0})) == 1

    memory = inv.Memory(warmup=10, min_judged=100, window=1)
    for t, rss in ((0, 50), (10, 100), (200, 105)):
        memory.sample(1, "replica-a", 0, t, rss * 1_000_000)
    for t, rss in ((0, 50), (10, 100), (200, 120)):
        memory.sample(2, "replica-b", 0, t, rss * 1_000_000)
    found, lines = memory.judge()
    assert [v.message.split()[0] for v in found] == ["replica-b"]
    assert len(lines) == 2


def test_the_recovery_judged_ends_when_the_resources_not_excused_are_ready():
    recovery = inv.Recovery(resync=30)
    recovery.burst_ended(0)
    assert recovery.ready(20, ["soak/r1", "soak/r2"], frozenset({"soak/r2"})) == []
    assert recovery.ready(30, ["soak/r2"], frozenset({"soak/r2"})) == []
    assert recovery.ready(90, []) == []
    assert (recovery.longest, recovery.longest_all) == (30, 90)


def test_memory_judges_a_standby_after_leading_apart_and_leaders_once_warm():
    # What a term of leadership builds stays when the replica stands by again; it fills over
    # the first minutes of leading, counted across terms.
    memory = inv.Memory(warmup=10, min_judged=500, window=60, lead_warmup=600)
    mb = 1_000_000
    for t in range(0, 200, 10):
        memory.sample(1, "replica-a", 0, t, 5 * mb)
    for t in range(200, 400, 10):
        memory.sample(1, "replica-a", 0, t, (5 + (t - 200) // 8) * mb, leading=True)
    for t in range(400, 3000, 10):
        memory.sample(1, "replica-a", 0, t, 30 * mb)
    for t in range(3000, 4000, 10):
        memory.sample(1, "replica-a", 0, t, min(34, 30 + (t - 3000) // 50) * mb, leading=True)
    found, lines = memory.judge()
    assert found == [], lines
    assert [line.split(" (pid")[0] for line in lines] == [
        "replica-a (standby)",
        "replica-a (leading)",
        "replica-a (standby after leading)",
    ]
    assert "not judged" in lines[2], "it had led 200 s only when it stood by"
    assert memory.judged() == 1, "the leading role; the first standby was too short"
    # Growth once warm is a leak.
    for t in range(4000, 5000, 10):
        memory.sample(1, "replica-a", 0, t, (34 + (t - 4000) // 100) * mb, leading=True)
    found, _ = memory.judge()
    assert [v.message.split(" anonymous")[0] for v in found] == ["replica-a (leading)"]


def test_memory_judges_the_trend_not_one_step_of_the_allocator():
    # RssAnon moves by about 3 MB both ways from one minute to the next: the medians of the
    # windows at each end see through a step that does not last; steady growth still shows.
    memory = inv.Memory(warmup=0, min_judged=600, window=300)
    for t in range(0, 1801, 10):
        step = 3 if t % 60 >= 40 else 0
        memory.sample(1, "replica-a", 0, t, (30 + step) * 1_000_000, leading=True)
        memory.sample(2, "replica-b", 0, t, (30 + step + t / 300) * 1_000_000, leading=True)
    # One sample at each end would judge +13 %.
    memory.sample(1, "replica-a", 0, 1810, 34 * 1_000_000, leading=True)
    found, lines = memory.judge()
    assert "+0.0%" in lines[0], lines
    assert [v.message.split(" (")[0] for v in found] == ["replica-b"], lines
    assert "medians of 300 s at each end" in lines[0]


def test_memory_judges_what_the_process_allocates_not_its_executables_pages():
    # The executable's pages map in as code paths first run: file-backed growth is shown, not
    # judged; anonymous growth is.
    memory = inv.Memory(warmup=10, min_judged=100, window=1)
    for t, anon, file in ((10, 40, 30), (200, 41, 45)):
        memory.sample(1, "replica-a", 0, t, anon * 1_000_000, file=file * 1_000_000)
    found, lines = memory.judge()
    assert found == []
    assert "file-backed, not judged: 30.0 to 45.0 MB" in lines[0]
    memory.sample(1, "replica-a", 0, 300, 45 * 1_000_000, file=45 * 1_000_000)
    found, _ = memory.judge()
    assert [v.message for v in found] == ["replica-a (standby) anonymous RSS grew 12.5% over 290s"]


def test_memory_judges_each_role_on_its_own():
    # A standby that takes the Lease steps up (it now keeps what reconciles keep); growth
    # while leading is judged from the leading stretch's own warm-up.
    memory = inv.Memory(warmup=10, min_judged=100, window=1)
    for t, rss, leading in ((0, 50, False), (10, 50, False), (200, 51, False), (210, 80, True),
                            (220, 80, True), (400, 82, True)):
        memory.sample(1, "replica-a", 0, t, rss * 1_000_000, leading=leading)
    found, lines = memory.judge()
    assert found == []
    assert [line.split(" (pid")[0] for line in lines] == ["replica-a (standby)", "replica-a (leading)"]
    # A leak while leading still counts.
    memory.sample(1, "replica-a", 0, 600, 95 * 1_000_000, leading=True)
    found, _ = memory.judge()
    assert [v.message.split(" anonymous RSS")[0] for v in found] == ["replica-a (leading)"]
    # Each term of leadership is compared with the first: a leak of a few % per term adds up.
    terms = inv.Memory(warmup=10, min_judged=100, window=1)
    t = 0
    for term in range(4):
        for rss in (50, 50):
            terms.sample(2, "replica-b", 0, t, rss * 1_000_000, leading=False)
            t += 20
        for rss in (80 + 4 * term, 80 + 4 * term):
            terms.sample(2, "replica-b", 0, t, rss * 1_000_000, leading=True)
            t += 20
    found, _ = terms.judge()
    assert [v.message.split(" anonymous RSS")[0] for v in found] == ["replica-b (leading)"]


def held(key, received, answered):
    return dict(write(key, answered), receivedAt=received)


def test_one_writer_catches_a_standby_that_took_the_lease_early():
    # b took the Lease 3 s after a's renewal (a's still had 12 s to run): by a's own renewals
    # alone a's write at 108 is inside its term, but b held the Lease then: two writers.
    check = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    check.lease_seen("replica-a", 100.0)
    check.lease_seen("replica-b", 103.0)
    both = check.calls([write("replica-a", 108.0), write("replica-b", 108.5)])
    assert [v.message.split("'")[0].split()[-1] for v in both] == ["replica-a"]
    assert "5.0s after replica-b renewed the Lease" in both[0].message
    assert "holder then: replica-b" in both[0].message


def test_one_writer_waits_for_the_lease_to_be_read_after_a_write():
    # b acquires at 130 and writes at 130.2; the harness's last read of the Lease was asked at
    # 130.1 (before the acquisition was seen): judged now, b would look as if it never held it.
    check = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    check.lease_seen("replica-a", 100.0)
    assert check.calls([write("replica-b", 130.2)], observed_until=130.1) == []
    assert len(check.pending) == 1
    check.lease_seen("replica-b", 130.0)
    assert check.calls([], observed_until=131.0) == [] and check.pending == []
    # A write by nobody's holder is still reported once the Lease was read after it.
    assert check.calls([write("replica-a", 150.0)], observed_until=149.0) == []
    assert len(check.calls([], observed_until=151.0)) == 1


def test_one_writer_excuses_only_a_hold_that_outlived_a_stopped_replica():
    check = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    check.lease_seen("replica-a", 100.0)
    check.lease_seen("replica-b", 116.0)
    # Sent at 104 within a's term, held by the endpoint until 125, a stopped from 105 to 125.
    check.paused("replica-a", 105.0)
    check.resumed("replica-a", 125.0)
    assert check.calls([held("replica-a", 104.0, 125.0)]) == []
    assert len(check.held_while_paused) == 1 and "while it was stopped" in check.held_while_paused[0]
    # The same hold with a running replica: it could have given up at the deadline.
    running = inv.OneWriter({"replica-a", "replica-b"}, lease_seconds=15)
    running.lease_seen("replica-a", 100.0)
    assert len(running.calls([held("replica-a", 109.0, 119.0)])) == 1
    # Sent after the Lease expired, or after the renew deadline (the fence should have stopped
    # it): no excuse, stopped or not.
    late = check.calls([held("replica-a", 117.0, 118.0), held("replica-a", 112.0, 120.0)])
    assert len(late) == 2


def test_trap_one_checks_what_the_alarm_watches_and_schedules_to_zero():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    st = state()
    st["123456789012"]["MetricAlarms"][0]["Dimensions"] = [{"Name": "EndpointName", "Value": "e2"}]
    wrong = check.state(100, 0, [resource()], st, {"soak/r1": 2})
    assert len(wrong) == 1 and "endpoint 'e2', not 'e1'" in wrong[0].message
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    st = state()
    st["123456789012"]["MetricAlarms"][0]["MetricName"] = "ApproximateBacklogSizePerInstance"
    assert len(check.state(100, 0, [resource()], st, {"soak/r1": 2})) == 1
    # minCapacity 1 with a schedule to 0 needs the wiring too.
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    scheduled = resource(min_capacity=1, zero_by_schedule=True)
    assert len(check.state(100, 0, [scheduled], state(step=False), {"soak/r1": 2})) == 1
    assert check.state(100, 0, [resource(min_capacity=1)], state(step=False), {"soak/r1": 2}) == []


def test_trap_one_without_a_status_judges_the_targets_max_capacity():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    # No effectiveMaxCapacity in status (never written): the target's MaxCapacity 2 counts.
    assert len(check.state(100, 0, [resource()], state(alarm=False), {})) == 1
    assert len(check.state(100, 0, [resource(key="soak/r2")], state(alarm=False), {"soak/r2": None})) == 1


def test_a_deleted_resource_stuck_in_the_api_server_is_reported():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    gone = resource(deleted_at=100.0)
    clean = {"123456789012": {"ScalableTargets": [], "ScalingPolicies": [], "MetricAlarms": []}}
    assert check.state(177, 0, [gone], clean, {}, present=set()) == []
    stuck = check.state(177, 0, [gone], clean, {}, present={"r1"})
    assert [v.invariant for v in stuck] == [inv.Ownership.left] and "finalizer" in stuck[0].message


def test_quota_failures_are_recognised_in_aws_wording():
    check = inv.QuotaShare(window_limit=100, reaction_limit=50)
    message = ("Failed to set desired instance count to 20. Reason: The account-level service limit "
               "'ml.g5.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances")
    failed = [{"ActivityId": "a1", "ResourceId": RID, "StatusMessage": message}]
    assert len(check.failed_activities(5, "123456789012", failed, {RID: "ml.g5.xlarge"})) == 1


def test_coverage_reports_a_soak_that_could_not_look():
    coverage = inv.Coverage(converge_limit=100, blind_limit=30)
    assert coverage.round(0, False, False, True, False) == []
    never = coverage.round(101, False, False, True, False)
    assert [v.invariant for v in never] == [inv.Coverage.converged]
    assert coverage.round(102, True, False, True, False) == []
    # Blind outside faults past the limit; a fault (the API server restarted) is not counted.
    assert coverage.round(110, True, True, False, False) == []
    assert coverage.round(120, True, False, False, False) == []
    assert [v.invariant for v in coverage.round(151, True, False, False, False)] == [inv.Coverage.looked]
    assert [v.invariant for v in coverage.finish(200)] == [inv.Coverage.armed]
    armed = inv.Coverage(converge_limit=100, blind_limit=30)
    for t in (0, 1, 2):
        armed.round(t, True, False, True, True)
    assert armed.armed_seconds == 2 and armed.finish(3) == []


def test_coverage_wants_the_quiet_checks_after_the_last_fault():
    coverage = inv.Coverage(converge_limit=100, blind_limit=30)
    for t in range(0, 40):
        coverage.round(t, True, False, True, True)
    coverage.fault_ended()
    # Armed long before the last fault, for 10 s after it: a resync of 20 s was needed.
    for t in range(40, 51):
        coverage.round(t, True, False, True, t >= 41)
    found = coverage.finish(51, after_last_fault=20)
    assert [v.invariant for v in found] == [inv.Coverage.armed]
    assert "only 10s after the last fault" in found[0].message
    fresh = inv.Coverage(converge_limit=100, blind_limit=30)
    for t in range(0, 25):
        fresh.round(t, True, False, True, True)
    fresh.fault_ended()
    for t in range(25, 47):
        fresh.round(t, True, False, True, True)
    assert fresh.finish(47, after_last_fault=20) == []


def test_a_quota_dip_makes_only_its_types_resources_wait():
    check = inv.Ownership(resync=30, grace=10, replicas={"replica-a"}, foreign_prefix="foreign-")
    lost = state(target=False)
    # The dip of this type ended at 90: not settled at 100; settled at 133 (a resync, a tenth
    # more, the grace).
    assert check.state(100, 0, [resource()], lost, {"soak/r1": 2}, quiet_by_key={"soak/r1": 90}) == []
    assert len(check.state(134, 0, [resource()], lost, {"soak/r1": 2}, quiet_by_key={"soak/r1": 90})) == 1
