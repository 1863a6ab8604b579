"""The soak harness's own logic (tests/soak/soak.py) that needs no cluster: its settings refuse
nonsense with a message naming the setting, and its fault schedule leaves the quiet time the
checks need."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))
import soak  # noqa: E402


@pytest.fixture
def settings(monkeypatch):
    for name in ("SOAK_SECONDS", "N", "SEED", "SCHEDULE", "RESYNC_SECONDS", "TIME_SCALE"):
        monkeypatch.delenv(name, raising=False)
    # Any executable will do: the settings only check that there is one.
    monkeypatch.setenv("ASYNCSCALE_BIN", sys.executable)
    monkeypatch.setenv("CONTROLPLANE_TOOL", sys.executable)
    return monkeypatch


@pytest.mark.parametrize("name, value, says", [
    ("SOAK_SECONDS", "abc", "SOAK_SECONDS='abc'"),
    ("SOAK_SECONDS", "-5", "at least 1"),
    ("SOAK_SECONDS", "nan", "SOAK_SECONDS='nan'"),
    ("N", "0", "N='0'"),
    ("N", "2.5", "whole number"),
    ("SEED", "x", "SEED='x'"),
    ("SCHEDULE", "fast", "`random`"),
    ("RESYNC_SECONDS", "1", "at least 5"),
    ("ASYNCSCALE_BIN", "/nonexistent/asyncscale", "make build"),
])
def test_nonsense_settings_are_refused_naming_the_setting(settings, name, value, says):
    settings.setenv(name, value)
    with pytest.raises(soak.ConfigError) as refused:
        soak.Config()
    assert says in str(refused.value) and name in str(refused.value)


def test_a_soak_too_short_for_its_schedule_is_refused_with_the_least_length(settings):
    settings.setenv("SCHEDULE", "compressed")
    settings.setenv("SOAK_SECONDS", "60")
    with pytest.raises(soak.ConfigError, match=r"set SOAK_SECONDS=\d+ or more"):
        soak.Config()
    settings.setenv("SOAK_SECONDS", "180")
    assert soak.Config().n == 300


def schedule_of(config: soak.Config, seed: int, start: float, end: float):
    bare = soak.Soak.__new__(soak.Soak)
    bare.config = config
    bare.rng = random.Random(seed)
    return bare.schedule(start + config.warm, end - config.tail)


@pytest.mark.parametrize("seed", range(20))
def test_every_fault_is_over_before_the_quiet_tail(settings, seed):
    settings.setenv("SCHEDULE", "compressed")
    settings.setenv("SOAK_SECONDS", "180")
    config = soak.Config()
    events = schedule_of(config, seed, 0.0, config.seconds)
    assert sorted(k for _, k in events) == sorted(soak.Soak.KINDS)
    assert all(t + config.fault_seconds(k) <= config.seconds - config.tail for t, k in events)
    starts = [t for t, _ in events]
    assert all(b - a >= soak.MIN_STEP - 1e-9 for a, b in zip(starts, starts[1:]))

    settings.setenv("SCHEDULE", "random")
    settings.setenv("SOAK_SECONDS", "3600")
    config = soak.Config()
    events = schedule_of(config, seed, 0.0, config.seconds)
    assert set(soak.Soak.KINDS) <= {k for _, k in events}
    assert all(t + config.fault_seconds(k) <= config.seconds - config.tail for t, k in events)


@pytest.mark.parametrize("seed", range(20))
def test_an_hour_leaves_a_leader_a_spell_with_nothing_that_moves_the_lease(settings, seed):
    settings.setenv("SCHEDULE", "random")
    settings.setenv("SOAK_SECONDS", "3600")
    config = soak.Config()
    bare = soak.Soak.__new__(soak.Soak)
    bare.config = config
    bare.rng = random.Random(seed)
    events = bare.schedule(config.warm, config.seconds - config.tail)
    a, b = bare.leader_spell
    assert b - a == pytest.approx(soak.LEADER_SPELL)
    moving = [(t, k) for t, k in events if k in soak.LEASE_MOVING]
    assert moving, "the other faults still move it"
    assert all(t + config.fault_seconds(k) < a or t > b for t, k in moving), (a, b, moving)
    assert set(soak.Soak.KINDS) <= {k for _, k in events}
    # Too short for one: none, and nothing changes.
    settings.setenv("SOAK_SECONDS", "1200")
    short = soak.Config()
    bare.config = short
    bare.schedule(short.warm, short.seconds - short.tail)
    assert bare.leader_spell is None


def test_times_parse_with_nanoseconds_and_offsets():
    assert soak.micro_time("2026-12-07T04:25:46.123456789Z") == pytest.approx(
        soak.micro_time("2026-12-07T04:25:46.123456Z"))
    assert soak.micro_time("2026-12-07T04:25:46+00:00") == soak.micro_time("2026-12-07T04:25:46Z")
    assert soak.micro_time("not a time") is None


def test_a_self_check_that_did_not_run_is_not_counted_as_blind():
    bare = soak.Soak.__new__(soak.Soak)
    bare.violations = []
    assert bare.counted_violations() == [], "interrupted before it: the run fails as interrupted"
    bare.self_check_ok = False
    assert [v.invariant for v in bare.counted_violations()] == ["self-check"]
    bare.self_check_ok = True
    assert bare.counted_violations() == []


def test_the_report_shows_a_resync_herd_against_the_fleets_own_rate():
    from collections import Counter
    # 300 resources, resync 30 s: a herd puts all of them in one window of three.
    herd = Counter({w: (300 if w % 3 == 0 else 0) for w in range(60)})
    spread = Counter({w: 100 for w in range(60)})
    assert soak.herd_line(herd, 30).endswith("median 0, largest 300")
    assert soak.herd_line(spread, 30).endswith("median 100, largest 100")
    assert "none logged" in soak.herd_line(Counter(), 30)
