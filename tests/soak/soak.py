#!/usr/bin/env python3
"""A soak of asyncscale: everything at once, under a random but repeatable schedule of faults,
restarts and churn, with the invariants (tests/soak/invariants.py) checked every second.

What runs: the real kube-apiserver and etcd (`asyncscale-controlplane`, which restarts either on
command, etcd on its own data), two controller replicas with leader election, each signing with
its own AWS access key (replica-a, replica-b), and the local AWS endpoint (`asyncscale sim
serve`) with AWS's published request rates and a clock TIME_SCALE times faster than the wall's.
The fleet: N AsyncEndpointScaling resources over three instance types, a fifth of them in a
second account through `roleArn`, some with schedules, all under the Share quota policy, next to
endpoints asyncscale does not manage that use part of each quota; traffic from a day-shaped load
makes the endpoints scale out from zero and back in.

The chaos schedule (from SEED), printed as it happens: SIGKILL of the leader, SIGSTOP of the
leader past the Lease then SIGCONT, kube-apiserver restart, etcd restart, AWS fault bursts
(30 % of requests), one AWS operation hung, a quota lowered below use and raised again, endpoints
deleted and re-created behind asyncscale's back, a foreign tool's policy and scheduled action on
a managed target; and all along, resource churn (create, edit, delete: about 10 % of the
resources a minute).

    SOAK_SECONDS=3600 N=300 SEED=1 tests/soak/soak.py        (make soak)
    SOAK_SECONDS=180 N=20 SCHEDULE=compressed tests/soak/soak.py    (make test: every fault once)

Exit status 1 on any violation. The table, the violations and an SVG chart go to OUT (default
target/soak). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import http.client
import json
import math
import os
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invariants as inv  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OWN = "123456789012"
OTHER = "222222222222"
ROLE = f"arn:aws:iam::{OTHER}:role/asyncscale"
TYPES = ["ml.g4dn.xlarge", "ml.g5.xlarge", "ml.inf2.xlarge"]
REPLICAS = ["replica-a", "replica-b"]
LEASE_SECONDS = 15.0
FOREIGN = "foreign-"
NAMESPACE = "soak"
# The invariant of the harness's own troubles: a fault it could not lift, the endpoint or the
# control plane gone, a restart that never came back.
HARNESS = "harness in control"
# A controller replica that exited without the harness stopping it.
CRASH = "no replica crash"
# The least time between two faults of the compressed schedule.
MIN_STEP = 3.0
# The faults after which another replica may hold the Lease: an etcd or kube-apiserver restart
# longer than the renew deadline moves it too.
LEASE_MOVING = {"kill-leader", "pause-leader", "apiserver-restart", "etcd-restart"}
# A random schedule half as long again or more leaves one spell this long with no fault that moves
# the Lease (the others go on): the memory check judges a leader only once it has led ten
# minutes, then for ten more past its stretch's warm-up, and in the hour at 901dcb4 no term
# lasted that long (3 to 11 minutes), so a leader's memory was never judged.
LEADER_SPELL = 1500.0
# How long a restarted leader's first pass may take before the quiet checks judge it (see
# Soak.cold): at N = 300 and AWS's rates it took about a minute.
COLD_START_LIMIT = 180.0
# How long after a quota dip its endpoints may still be not Ready by design, before the recovery
# check's own limit: the controller re-reads a quota every 300 s, so a share the dip took to 0
# comes back only then; and a scale-out that failed on the lowered quota stays the endpoint's
# state (ScalingHealthy QuotaExceeded) until a newer activity, or for the longest scale-out
# cooldown (300 s by default) plus 120 s when none comes (the demand was met or went away).
DIP_AFTERMATH = 420.0
# A resource whose Ready is False for a scale-out AWS failed on the quota is not judged by the
# recovery check at all: the controller tells a failure that still matters from an old one by
# the activity's end time, and the endpoint's clock runs TIME_SCALE times ahead of the wall,
# so in the soak every failure looks recent. Every quota failure is judged by the quota check
# instead (a violation outside a dip or a growth's reaction window). Nor is one whose Ready is
# False for WaitingForQuota: its share is 0 (the quota is in use, or reserved by endpoints with
# instances or backlog) or its minimum does not fit, which is the state the quota dictates, not
# a fault's aftermath; nothing lost still judges its AWS objects, and the quota check the caps.
WAITING_ON_THE_QUOTA = ("QuotaExceeded", "WaitingForQuota")


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


class ConfigError(Exception):
    """A setting the soak cannot run with; the message names it and says what it takes."""


def number(name: str, default: str, what: str, example: str, least: float | None, whole: bool = False):
    text = env(name, default).strip()
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (least is not None and value < least):
        kind = "a whole number" if whole else "a number of seconds" if "SECONDS" in name else "a number"
        bound = "" if least is None else f" of at least {least:g}"
        raise ConfigError(f"{name}={text!r}: {what} must be {kind}{bound} (e.g. {name}={example})")
    return value


class Config:
    # How long each fault keeps the fleet disturbed, at most (a restart: down, then start-up).
    def __init__(self) -> None:
        schedule = env("SCHEDULE", "random").strip()
        if schedule not in ("random", "compressed"):
            raise ConfigError(
                f"SCHEDULE={schedule!r}: the fault schedule is `random` (faults at random, for a "
                "soak of 12 minutes or more) or `compressed` (every fault kind once, for minutes)"
            )
        self.compressed = schedule == "compressed"
        self.seconds = number("SOAK_SECONDS", "3600", "the soak's length", "3600", 1)
        self.n = number("N", "300", "the number of resources", "300", 1, whole=True)
        # Any integer: it only seeds the schedule, the fleet and the churn.
        self.seed = number("SEED", "1", "the seed of the fleet, the schedule and the churn", "1", None, whole=True)
        self.resync = number("RESYNC_SECONDS", "20" if self.compressed else "30",
                             "the controllers' resync", "30", 5)
        self.time_scale = number("TIME_SCALE", "10", "the endpoint's clock speed-up", "10", 1)
        self.bin = env("ASYNCSCALE_BIN", str(ROOT / "target/debug/asyncscale"))
        self.controlplane = env(
            "CONTROLPLANE_TOOL", str(ROOT / "target/debug/asyncscale-controlplane")
        )
        for name, path in (("ASYNCSCALE_BIN", self.bin), ("CONTROLPLANE_TOOL", self.controlplane)):
            if not os.access(path, os.X_OK):
                raise ConfigError(
                    f"{name}={path}: no executable there; build it first (`make build`, which "
                    f"`make soak` runs) or point {name} at one"
                )
        if shutil.which("kubectl") is None:
            raise ConfigError("kubectl is not on PATH: the soak applies the CRD with it")
        self.out = Path(env("OUT", str(ROOT / "target/soak")))
        self.grace = 10.0
        # Fault lengths: the in a full soak, shorter when compressed into minutes.
        short = self.compressed
        self.burst_seconds = 20.0 if short else 60.0
        self.hang_seconds = 30.0 if short else 120.0
        self.pause_seconds = LEASE_SECONDS + 5.0
        self.dip_seconds = 30.0 if short else 420.0
        # Two resyncs: the controller's picture of the account is a resync old at most, so the
        # endpoint is seen missing before it comes back.
        self.recreate_gap = 2 * self.resync
        self.churn_per_minute = 0.10
        # Before the first fault, for the fleet to converge; after the last one ends, for the
        # final recovery and the quiet checks.
        self.warm = 2 * self.resync if self.compressed else 5 * self.resync
        self.tail = 3 * self.resync
        shortest = self.shortest_soak()
        if self.seconds < shortest:
            hint = "" if self.compressed else " (or SCHEDULE=compressed, with shorter faults)"
            raise ConfigError(
                f"SOAK_SECONDS={self.seconds:g} is too short for SCHEDULE={schedule}: the warm-up "
                f"({self.warm:g}s), every fault kind once and {self.tail:g}s of quiet after the last "
                f"one take at least {shortest:.0f}s; set SOAK_SECONDS={math.ceil(shortest)} or more{hint}"
            )

    def fault_seconds(self, kind: str) -> float:
        """How long a fault of `kind` disturbs the fleet, at most (a restart: down, then up)."""
        return {
            "kill-leader": 5.0, "pause-leader": self.pause_seconds, "apiserver-restart": 25.0,
            "etcd-restart": 30.0, "aws-burst": self.burst_seconds, "aws-hang": self.hang_seconds,
            "quota-dip": self.dip_seconds, "endpoint-recreate": self.recreate_gap,
            "foreign-policy": 0.0,
        }[kind]

    def shortest_soak(self) -> float:
        # Every kind once, MIN_STEP apart, the longest last (the schedule's densest packing).
        longest = max(self.fault_seconds(k) for k in Soak.KINDS)
        return self.warm + MIN_STEP * (len(Soak.KINDS) - 1) + longest + self.tail


def log(t0: float, message: str) -> None:
    print(f"[{time.time() - t0:8.1f}s] {message}", flush=True)


def herd_line(starts: Counter, resync: float) -> str:
    """The spread of reconciles in the second half of the run, by 10-s window: the fleet's own
    rate puts each window near the median; a resync herd shows as windows far above it."""
    if not starts:
        return "- reconciles per 10 s: none logged"
    last = max(starts)
    half = [starts.get(w, 0) for w in range(last // 2, last)]
    if not half:
        return "- reconciles per 10 s: too short a run"
    return (f"- reconciles started per 10 s in the second half of the run (resync {resync:.0f} s): "
            f"median {statistics.median(half):.0f}, largest {max(half)}")


def micro_time(text: str | None) -> float | None:
    """An RFC 3339 time (a Lease's MicroTime, a log line's timestamp) as epoch seconds; None
    when there is none or it does not parse (one odd line must not cost a round of checks)."""
    if not text:
        return None
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:
        # Python reads at most microseconds: nanoseconds are cut to six digits.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:min(digits, 6)] + rest[digits:]
        text = head + "." + rest
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


class Kube:
    """The few calls the soak makes to the API server, with the admin's client certificate."""

    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        url = urllib.parse.urlparse(cluster["server"])
        self.host, self.port = url.hostname, url.port
        self.context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.context.load_cert_chain(user["client-certificate"], user["client-key"])

    def call(self, method: str, path: str, body: object = None, content_type: str = "application/json",
             timeout: float = 2.0):
        # Short for reads: a round of checks must not wait long on an API server that is down.
        # Changes (churn) take `timeout` longer: one that times out may still have been made.
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": content_type})
            response = conn.getresponse()
            text = response.read()
            return response.status, (json.loads(text) if text else None)
        finally:
            conn.close()

    def aes_path(self, name: str | None = None) -> str:
        base = f"/apis/asyncscale.io/v1alpha1/namespaces/{NAMESPACE}/asyncendpointscalings"
        return base if name is None else f"{base}/{name}"


class Aws:
    """The local endpoint's admin routes (and, for the foreign tool, its AWS API)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: object = None, account: str | None = None):
        if account:
            path += ("&" if "?" in path else "?") + f"account={account}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None

    def aws(self, target: str, body: dict, key: str) -> tuple[int, dict]:
        """One AWS JSON 1.1 request signed (in name: the endpoint checks no signature) with `key`."""
        stamp = time.strftime("%Y%m%d", time.gmtime())
        request = urllib.request.Request(self.url + "/", data=json.dumps(body).encode(), method="POST")
        request.add_header("Content-Type", "application/x-amz-json-1.1")
        request.add_header("X-Amz-Target", target)
        request.add_header(
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={key}/{stamp}/us-east-1/application-autoscaling/aws4_request, "
            "SignedHeaders=host, Signature=0",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


class Replica:
    def __init__(self, soak: "Soak", name: str):
        self.soak = soak
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log_path = soak.work / f"{name}.log"
        self.offset = 0
        self.started = 0.0
        self.metrics_port = free_port()
        # The harness killed it and has not started it again yet (a kill-leader fault).
        self.down_on_purpose = False
        self.stopped_on_purpose = False
        self.reported_exit: int | None = None
        self.crashes = 0

    def start(self) -> None:
        c = self.soak.config
        environment = dict(
            os.environ,
            KUBECONFIG=str(self.soak.kubeconfig),
            AWS_ACCESS_KEY_ID=self.name,
            AWS_SECRET_ACCESS_KEY="soak",
            AWS_EC2_METADATA_DISABLED="true",
            RUST_LOG="info,asyncscale_controller::reconciler=debug,asyncscale_controller::memory=debug",
        )
        environment.pop("AWS_SESSION_TOKEN", None)
        args = [
            c.bin, "--log-format", "json", "run", "--leader-elect", "--pod-name", self.name,
            "--resync", f"{int(c.resync)}s", "--lease-duration", f"{int(LEASE_SECONDS)}s",
            "--aws-endpoint", self.soak.aws.url, "--region", "us-east-1",
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}", "--namespace", NAMESPACE,
        ]
        with open(self.log_path, "ab") as stderr:
            self.proc = subprocess.Popen(args, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
        self.started = time.time()
        self.down_on_purpose = False
        self.soak.procs_started.append(self.proc)

    def tail(self, lines: int = 2) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return " | ".join(line[:300] for line in text)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> tuple[int, int] | None:
        """Resident memory: anonymous (RssAnon: heap, stacks) and file-backed (RssFile). Only
        the first can leak. The second is mostly the executable's own pages, mapped in as code
        paths first run (a debug build's text is over 100 MB): it grows as rare paths (faults,
        failovers) run, with no allocation at all: a heap profile of a leader under churn saw its
        live heap flat at 13 to 14 MB while its RSS grew by 10 MB."""
        if not self.alive():
            return None
        found = {}
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    found[key] = int(value.split()[0]) * 1024
        except (OSError, ValueError):
            return None
        if len(found) < 2:
            return None
        return found["RssAnon"], found["RssFile"]

    def new_lines(self) -> list[dict]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    def __init__(self, config: Config):
        self.config = config
        # The fleet and the fault schedule, drawn before anything runs: the same for a SEED.
        self.rng = random.Random(config.seed)
        # Churn and traffic draw as the run goes (how many depends on timing): streams of their
        # own, so that they do not shift each other or the schedule.
        self.churn_rng = random.Random(f"{config.seed}/churn")
        self.traffic_rng = random.Random(f"{config.seed}/traffic")
        self.work = Path(tempfile.mkdtemp(prefix="asyncscale-soak-"))
        self.kubeconfig = self.work / "kubeconfig"
        self.t0 = time.time()
        self.procs: list[subprocess.Popen] = []
        # Every replica process ever started (kill-leader starts new ones), for the cleanup.
        self.procs_started: list[subprocess.Popen] = []
        self.replicas: dict[str, Replica] = {}
        self.controlplane: subprocess.Popen | None = None
        self.timers: list[tuple[float, object]] = []
        self.pending_restarts: list[tuple[str, int, int, float]] = []
        # Creates and deletes whose answer the harness did not get (the API server down, a
        # timeout): whether they happened is read from the API server's list.
        self.unsure_creates: dict[str, dict] = {}
        self.unsure_deletes: dict[str, float] = {}
        self.lease_read_at = 0.0  # when the last successful read of the Lease was asked
        self.fleet_created_at = 0.0
        self.armed = False
        self.last_disturbance_end = 0.0
        # Faults that disturb the resources of one (account, instance type) only: which, and
        # when the last one of each scope ended.
        # A new leader (one that took the Lease over, or a killed one started again) is cold: it
        # reads the whole account, then proves each resource's ownership (a ListTagsForResource
        # each, at Application Auto Scaling's rate), before its first pass is over. That pass is
        # a disturbance of its own ("cold-start"), over once every live resource was reconciled
        # after the start, or after COLD_START_LIMIT; each one's length is reported.
        self.cold: dict[int, tuple[float, set[str]]] = {}
        self.takeover_at: float | None = None  # set by the Lease's watcher, under self.lock
        self.cold_starts: list[float] = []
        self.fault_scope: dict[int, tuple[str, str]] = {}
        self.scope_quiet: dict[tuple[str, str], float] = {}
        self.resources: dict[str, inv.Resource] = {}
        self.specs: dict[str, dict] = {}
        self.foreign_endpoints: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.quotas: dict[tuple[str, str], int] = {}
        self.base_quotas: dict[tuple[str, str], int] = {}
        self.faults_on: dict[int, tuple[str, float]] = {}  # fault id -> (kind, started)
        self.fault_spans: list[tuple[str, float, float]] = []
        self.faults_by_kind: Counter = Counter()
        self.last_fault_end = 0.0
        self.violations: list[inv.Violation] = []
        self.series: list[tuple[float, int, int, float | None, float | None, int]] = []
        self.lock = threading.Lock()
        self.holder: str | None = None
        self.lease_seen_at = 0.0
        self.last_renewed = None
        self.log_seq = 0
        self.next_name = 0
        self.ops = Counter()
        self.reconcile_errors: Counter = Counter()
        # Reconciles started per 10 s of the run (by either replica): a resync herd shows here.
        self.starts_per_10s: Counter = Counter()
        # How long each giving back of freed memory (malloc_trim) took, in ms.
        self.trims_ms: list[int] = []
        self.quiet_calls = 0
        self.quiet_endpoint_seconds = 0.0
        self.controlplane_log = self.work / "controlplane.log"
        self.stop = False
        self.converged = False
        self.converged_at = 0.0
        self.checks = 0
        self.check_seconds: list[float] = []
        c = config
        self.one_writer = inv.OneWriter(set(REPLICAS), LEASE_SECONDS)
        # The quota is re-read every five minutes; then a resync to refresh, one to lower.
        self.quota = inv.QuotaShare(
            window_limit=c.dip_seconds + 300 + 2 * inv.longest_resync(c.resync) + c.grace,
            reaction_limit=2 * inv.longest_resync(c.resync) + c.grace,
            learn_limit=300 + 2 * inv.longest_resync(c.resync) + c.grace,
        )
        self.ownership = inv.Ownership(c.resync, c.grace, set(REPLICAS), FOREIGN)
        self.recovery = inv.Recovery(c.resync, c.grace)
        self.visits = inv.Visits(c.resync, c.grace)
        # Creating N resources at AWS's rates (3 alarms a second) takes about N/3 s, and the
        # churn and faults that start after the warm-up slow it: a generous bound, a second each.
        self.coverage = inv.Coverage(
            converge_limit=c.warm + c.n + 4 * c.resync, blind_limit=2 * c.resync + c.grace
        )
        warmup = 60.0 if c.compressed else 300.0
        self.memory = inv.Memory(
            warmup=warmup, min_judged=600.0, lead_warmup=60.0 if c.compressed else 600.0
        )

    # ---- processes -------------------------------------------------------------------------

    def start_processes(self) -> None:
        c = self.config
        with open(self.controlplane_log, "wb") as stderr:
            # Its own process group, with its etcd and kube-apiserver: stopped during its
            # start-up (before it can clean up, and before the harness knows its directory),
            # the group is what cleanup kills.
            self.controlplane = subprocess.Popen(
                [c.controlplane, "--kubeconfig", str(self.kubeconfig)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                start_new_session=True,
            )
        self.procs.append(self.controlplane)
        aws_log = self.work / "aws.log"
        quotas: list[str] = []
        for t in TYPES:
            for account in (OWN, OTHER):
                managed = sum(
                    1 for r in self.initial if r["account"] == account and r["type"] == t
                )
                # Tight on purpose: the specs' maxCapacities add up past it (contended).
                quota = math.ceil(1.5 * managed) + 2 + 2
                self.quotas[(account, t)] = quota
                self.base_quotas[(account, t)] = quota
        with open(aws_log, "wb") as stderr:
            self.sim = subprocess.Popen(
                [
                    c.bin, "sim", "serve", "--listen", "127.0.0.1:0", "--time-scale", str(c.time_scale),
                    "--rate-limits", "aws", "--rate-limit", "application-autoscaling:*=10/10",
                    "--rate-limit", "sagemaker:*=10/10",
                ],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        self.procs.append(self.sim)
        url = wait_for(aws_log, "listening on", 60, lambda line: line.split("listening on")[1].split()[0],
                       process=self.sim)
        if not url.startswith("http"):
            url = "http://" + url
        self.aws = Aws(url.rstrip("/"))
        wait_for(self.controlplane_log, "control plane ready", 180, process=self.controlplane)
        self.controlplane_dir = controlplane_dir(self.kubeconfig)
        self.kube = Kube(self.kubeconfig)
        for account in (OWN, OTHER):
            applied = {t: self.quotas[(account, t)] for t in TYPES}
            self.aws.call("POST", "/_sim/quotas", {"applied": applied}, account=account)
        kubectl(self.kubeconfig, "apply", "-f", str(ROOT / "crds/asyncendpointscalings.asyncscale.io.yaml"))
        kubectl(self.kubeconfig, "wait", "--for=condition=Established",
                "crd/asyncendpointscalings.asyncscale.io", "--timeout=60s")
        kubectl(self.kubeconfig, "create", "namespace", NAMESPACE)
        self.replicas = {name: Replica(self, name) for name in REPLICAS}
        for r in self.replicas.values():
            r.start()

    def cleanup(self) -> None:
        """Stops everything the soak started, whatever state the run ended in: the replicas (a
        stopped one is continued first, or it would never die), the endpoint, then the control
        plane, which stops etcd and kube-apiserver and removes its directory itself; SIGKILL
        only when it does not, and then what it left is removed here."""
        for p in self.procs_started:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                except ProcessLookupError:
                    pass
                p.wait()
        for p in reversed(self.procs):
            if p.poll() is not None:
                continue
            p.terminate()
            # The control plane answers SIGTERM only between commands, and a restart takes
            # its downtime plus a start-up (up to a minute and a half for kube-apiserver).
            patience = 150 if p is self.controlplane else 30
            try:
                p.wait(timeout=patience)
            except subprocess.TimeoutExpired:
                log(self.t0, f"cleanup: pid {p.pid} ignored SIGTERM for {patience}s; SIGKILL")
                p.kill()
                p.wait()
        if self.controlplane is not None:
            try:
                os.killpg(self.controlplane.pid, signal.SIGKILL)
                log(self.t0, "cleanup: stopped what was left of the control plane's process group")
            except (ProcessLookupError, PermissionError):
                pass
        if self.controlplane is not None and self.controlplane.stdin is not None:
            try:
                self.controlplane.stdin.close()
            except OSError:
                pass
        leftover = getattr(self, "controlplane_dir", None)
        if leftover is not None and leftover.exists():
            # Killed before it could clean up: its etcd and kube-apiserver (their command lines
            # name this directory, which is this control plane's alone) and the directory.
            for pid in processes_naming(str(leftover)):
                log(self.t0, f"cleanup: stopping pid {pid}, left running by the control plane")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(leftover, ignore_errors=True)
            log(self.t0, f"cleanup: removed {leftover}, left by the control plane")

    # ---- the fleet -------------------------------------------------------------------------

    def plan_fleet(self) -> None:
        self.initial = [self.new_resource_plan() for _ in range(self.config.n)]

    def new_resource_plan(self, rng: random.Random | None = None) -> dict:
        rng = rng or self.rng
        self.next_name += 1
        i = self.next_name
        account = OTHER if rng.random() < 0.2 else OWN
        return {
            "name": f"r{i:04d}",
            "endpoint": f"soak-{i:04d}",
            "account": account,
            "type": TYPES[i % len(TYPES)],
            "min": 0 if rng.random() < 0.75 else 1,
            "max": rng.choice([2, 3, 4]),
            "target": rng.choice([3, 5, 8]),
            "schedules": rng.random() < 0.1,
        }

    def manifest(self, plan: dict) -> dict:
        spec = {
            "endpointName": plan["endpoint"],
            "instanceType": plan["type"],
            "region": "us-east-1",
            "minCapacity": plan["min"],
            "maxCapacity": plan["max"],
            "targetTracking": {"targetValue": plan["target"]},
        }
        if plan["account"] == OTHER:
            spec["roleArn"] = ROLE
        if plan["schedules"]:
            spec["schedules"] = [
                {"name": "busy", "schedule": "cron(0 8 * * ? *)", "minCapacity": 1, "maxCapacity": plan["max"]},
                {"name": "quiet", "schedule": "cron(0 20 * * ? *)", "minCapacity": 0, "maxCapacity": plan["max"]},
            ]
        return {
            "apiVersion": "asyncscale.io/v1alpha1",
            "kind": "AsyncEndpointScaling",
            "metadata": {"name": plan["name"], "namespace": NAMESPACE},
            "spec": spec,
        }

    def declare_endpoint(self, account: str, endpoint: str, instance_type: str, instances: int) -> None:
        self.aws.call(
            "POST", "/_sim/endpoints",
            {"endpoint": endpoint, "variant": "AllTraffic", "instanceType": instance_type,
             "throughputPerMinute": 6, "instances": instances},
            account=account,
        )

    def create(self, plan: dict) -> bool:
        # No instance yet: the endpoint's instances come from its scalable target, so that the
        # quota check is exact (an instance appearing outside asyncscale's hands would open a
        # reaction window; re-creating an endpoint behind its back does that on purpose).
        self.declare_endpoint(plan["account"], plan["endpoint"], plan["type"], 0)
        try:
            status, body = self.kube.call("POST", self.kube.aes_path(), self.manifest(plan), timeout=10)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # It may have been made all the same: the API server's list tells (observe).
            self.unsure_creates[plan["name"]] = dict(plan, asked_at=time.time())
            log(self.t0, f"churn: create {plan['name']} got no answer ({e}); the API server's list will tell")
            return False
        if status >= 500:
            self.unsure_creates[plan["name"]] = dict(plan, asked_at=time.time())
        if status not in (200, 201):
            log(self.t0, f"churn: create {plan['name']} answered {status}: {str(body)[:200]}")
            return False
        self.adopt(plan, time.time())
        return True

    def adopt(self, plan: dict, at: float) -> None:
        """`plan` is in the API server (created at `at`): the checks follow it from now on."""
        self.unsure_creates.pop(plan["name"], None)
        plan = {k: v for k, v in plan.items() if k != "asked_at"}
        self.specs[plan["name"]] = plan
        self.resources[plan["name"]] = inv.Resource(
            key=f"{NAMESPACE}/{plan['name']}", account=plan["account"], endpoint=plan["endpoint"],
            instance_type=plan["type"], min_capacity=plan["min"], changed_at=at,
            zero_by_schedule=plan["schedules"],
        )

    def plant_foreign_endpoints(self) -> None:
        for account in (OWN, OTHER):
            for t in TYPES:
                name = f"other-{t.split('.')[1]}-{account[-3:]}"
                self.declare_endpoint(account, name, t, 2)
                self.foreign_endpoints[(account, t)].append(name)

    # ---- chaos -----------------------------------------------------------------------------

    KINDS = [
        "kill-leader", "pause-leader", "apiserver-restart", "etcd-restart", "aws-burst",
        "aws-hang", "quota-dip", "endpoint-recreate", "foreign-policy",
    ]
    # The faults that keep asyncscale from reading or writing for every resource: while one is
    # on, and a resync after, the quiet checks wait. The others touch a few resources, and only
    # those wait: a quota dip (seven minutes in a full soak) those of its type, a re-created
    # endpoint its resource (Resource.changed_at); a foreign policy none (asyncscale must leave
    # it be and say so). Counting them as disturbing everything left the quiet checks blind
    # for most of an hour.
    DISTURBING = {"kill-leader", "pause-leader", "apiserver-restart", "etcd-restart", "aws-burst", "aws-hang", "cold-start"}

    def schedule(self, start: float, over_by: float) -> list[tuple[float, str]]:
        """When each fault starts: from `start` on, each one over by `over_by` at its longest
        (Config.fault_seconds), so that the quiet after the last one is really quiet; Config
        refuses a SOAK_SECONDS too short for that."""
        c = self.config
        latest = over_by - max(c.fault_seconds(k) for k in self.KINDS)
        if c.compressed or latest - start < 20 * len(self.KINDS):
            # Too short for a random schedule: every kind once, in a random order, as far apart
            # as the time allows (each must be over by `over_by`).
            self.leader_spell = None
            kinds = list(self.KINDS)
            self.rng.shuffle(kinds)
            step = min(
                (over_by - c.fault_seconds(k) - start) / i for i, k in enumerate(kinds) if i
            )
            return [(start + i * step, k) for i, k in enumerate(kinds)]
        self.leader_spell = None
        if latest - start >= 1.5 * LEADER_SPELL:
            a = self.rng.uniform(start, latest - LEADER_SPELL)
            self.leader_spell = (a, a + LEADER_SPELL)

        def moves_the_lease_in_the_spell(t: float, kind: str) -> bool:
            spell = self.leader_spell
            return (
                spell is not None
                and kind in LEASE_MOVING
                and t <= spell[1]
                and t + c.fault_seconds(kind) >= spell[0]
            )

        quiet_kinds = [k for k in self.KINDS if k not in LEASE_MOVING]
        events, t = [], start
        while t < latest:
            kind = self.rng.choice(self.KINDS)
            if moves_the_lease_in_the_spell(t, kind):
                kind = self.rng.choice(quiet_kinds)
            events.append((t, kind))
            # Now and then two faults together (a leader killed during a burst, say).
            t += self.rng.uniform(10, 40) if self.rng.random() < 0.25 else self.rng.uniform(60, 180)
        # Every kind at least once.
        missing = [k for k in self.KINDS if k not in {k2 for _, k2 in events}]
        for k in missing:
            t = self.rng.uniform(start, latest)
            while moves_the_lease_in_the_spell(t, k):
                t = self.rng.uniform(start, latest)
            events.append((t, k))
        return sorted(events)

    def fault_begin(self, kind: str) -> int:
        ident = len(self.fault_spans) + len(self.faults_on) + 1000 * len(self.faults_by_kind)
        while ident in self.faults_on:
            ident += 1
        self.faults_on[ident] = (kind, time.time())
        self.faults_by_kind[kind] += 1
        self.recovery.burst_started()
        return ident

    def fault_end(self, ident: int) -> None:
        if ident not in self.faults_on:
            return
        kind, started = self.faults_on.pop(ident)
        now = time.time()
        self.fault_spans.append((kind, started, now))
        self.last_fault_end = now
        self.coverage.fault_ended()
        if kind in self.DISTURBING:
            self.last_disturbance_end = now
        scope = self.fault_scope.pop(ident, None)
        if scope is not None:
            self.scope_quiet[scope] = now
        log(self.t0, f"fault over: {kind} ({now - started:.0f}s)")
        if not self.faults_on and self.converged:
            self.recovery.burst_ended(now)

    def begin_cold(self, since: float) -> None:
        """A new leader's first pass starts (see `cold`); one still running ends here."""
        for ident, (started, _) in list(self.cold.items()):
            del self.cold[ident]
            self.cold_starts.append(since - started)
            self.fault_end(ident)
        ident = self.fault_begin("cold-start")
        self.cold[ident] = (since, {x.key for x in self.resources.values() if x.deleted_at is None})

    def later(self, seconds: float, action) -> None:
        self.timers.append((time.time() + seconds, action))

    def undo(self, ident: int, what: str, action, tries: int = 30) -> None:
        """Ends fault `ident` by `action` (lifting it), retried every 2 s while the harness's
        own call fails (an API server down, the endpoint busy): a fault that never ends would
        leave the quiet checks blind for the rest of the soak. The fault counts as over even
        when it cannot be lifted, and that is a violation."""
        try:
            action()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            if tries > 1:
                log(self.t0, f"chaos: {what} failed ({e!r}); again in 2s")
                self.later(2, lambda: self.undo(ident, what, action, tries - 1))
                return
            self.violations.append(inv.Violation(
                HARNESS, time.time(), f"could not {what} after 30 tries ({e!r}): the fault stays on"))
        self.fault_end(ident)

    def leader(self) -> Replica | None:
        return self.replicas.get(self.holder) if self.holder else None

    def inject(self, kind: str) -> None:
        """Starts one fault. The way it ends is set up before anything that may fail (a call
        the fault itself hangs or refuses): a fault half made still ends."""
        c = self.config
        t0 = self.t0
        if kind == "kill-leader":
            r = self.leader()
            if r is None or not r.alive():
                log(t0, "chaos: kill-leader skipped (no live leader)")
                return
            ident = self.fault_begin(kind)
            log(t0, f"chaos: SIGKILL {r.name} (the leader); back in 5s")
            r.down_on_purpose = True

            def restart(r=r):
                r.start()
                self.begin_cold(time.time())

            self.later(5, lambda ident=ident: self.undo(ident, f"start {r.name}", restart))
            r.proc.kill()
            r.proc.wait()
        elif kind == "pause-leader":
            r = self.leader()
            if r is None or not r.alive():
                log(t0, "chaos: pause-leader skipped (no live leader)")
                return
            ident = self.fault_begin(kind)
            log(t0, f"chaos: SIGSTOP {r.name} (the leader) for {c.pause_seconds:.0f}s, past the {LEASE_SECONDS:.0f}s Lease")
            proc = r.proc

            def resume(r=r, proc=proc):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                r.stopped_on_purpose = False
                with self.lock:
                    self.one_writer.resumed(r.name, time.time())
                log(t0, f"chaos: SIGCONT {r.name}")

            self.later(c.pause_seconds, lambda ident=ident: self.undo(ident, "continue the leader", resume))
            r.stopped_on_purpose = True
            with self.lock:
                self.one_writer.paused(r.name, time.time())
            proc.send_signal(signal.SIGSTOP)
        elif kind in ("apiserver-restart", "etcd-restart"):
            which = kind.split("-")[0]
            down = 5 if which == "apiserver" else 12
            ident = self.fault_begin(kind)
            log(t0, f"chaos: {which} killed, back in {down}s")
            # The control plane runs its commands one after the other: this one is done at the
            # `up` after those of the restarts of the same kind still queued before it.
            queued = sum(1 for p in self.pending_restarts if p[0] == which)
            self.pending_restarts.append(
                (which, ident, self.count_in_log(f"{which} up") + queued + 1, time.time()))
            try:
                self.controlplane.stdin.write(f"restart {which} {down}\n")
                self.controlplane.stdin.flush()
            except (OSError, ValueError):
                self.pending_restarts.pop()
                self.fault_end(ident)
                raise
        elif kind == "aws-burst":
            ident = self.fault_begin(kind)
            log(t0, f"chaos: AWS answers 30 % of requests with errors for {c.burst_seconds:.0f}s")

            def calm():
                for account in (OWN, OTHER):
                    self.aws.call("POST", "/_sim/fault-rate", {"rate": 0}, account=account)

            self.later(c.burst_seconds, lambda ident=ident: self.undo(ident, "end the error burst", calm))
            for account in (OWN, OTHER):
                self.aws.call("POST", "/_sim/fault-rate", {"rate": 0.3, "seed": self.rng.randrange(1 << 30)}, account=account)
        elif kind == "aws-hang":
            service, operation = self.rng.choice([
                ("cloudwatch", "PutMetricAlarm"), ("cloudwatch", "DescribeAlarms"),
                ("application-autoscaling", "RegisterScalableTarget"),
                ("application-autoscaling", "DescribeScalableTargets"),
                ("application-autoscaling", "PutScalingPolicy"),
                ("service-quotas", "GetServiceQuota"), ("sagemaker", "DescribeEndpoint"),
            ])
            ident = self.fault_begin(kind)
            log(t0, f"chaos: {service} {operation} hangs for {c.hang_seconds:.0f}s")
            # A hold lifts itself when its time is up.
            self.later(c.hang_seconds, lambda ident=ident: self.fault_end(ident))
            for account in (OWN, OTHER):
                self.aws.call("POST", "/_sim/faults", {"service": service, "operation": operation, "holdSeconds": c.hang_seconds}, account=account)
        elif kind == "quota-dip":
            account, t = self.rng.choice(sorted(self.quotas))
            use = self.instances_in_use(account, t)
            lowered = max(0, use - 1)
            ident = self.fault_begin(kind)
            self.fault_scope[ident] = (account, t)
            log(t0, f"chaos: quota of {t} in {account} lowered {self.quotas[(account, t)]} -> {lowered} (in use {use}) for {c.dip_seconds:.0f}s")

            def restore(account=account, t=t):
                self.aws.call("POST", "/_sim/quotas", {"applied": {t: self.base_quotas[(account, t)]}}, account=account)
                self.quotas[(account, t)] = self.base_quotas[(account, t)]
                log(t0, f"chaos: quota of {t} in {account} back to {self.base_quotas[(account, t)]}")

            self.later(c.dip_seconds, lambda ident=ident: self.undo(ident, "restore the quota", restore))
            self.quota.quota_lowered(account, t, time.time())
            self.aws.call("POST", "/_sim/quotas", {"applied": {t: lowered}}, account=account)
            self.quotas[(account, t)] = lowered
        elif kind == "endpoint-recreate":
            live = [r for r in self.resources.values() if r.deleted_at is None and not r.endpoint_missing]
            if not live:
                log(t0, "chaos: endpoint-recreate skipped (no live resource)")
                return
            r = self.rng.choice(live)
            ident = self.fault_begin(kind)
            log(t0, f"chaos: endpoint {r.endpoint} ({r.key}) deleted behind asyncscale's back; re-created in {c.recreate_gap:.0f}s")

            def recreate(r=r):
                # A real endpoint starts with an instance.
                self.declare_endpoint(r.account, r.endpoint, r.instance_type, 1)
                if r.deleted_at is None:
                    self.quota.endpoint_returns(r.account, r.instance_type, time.time())
                r.endpoint_missing = False
                r.changed_at = time.time()
                log(t0, f"chaos: endpoint {r.endpoint} re-created")

            r.endpoint_missing = True
            r.changed_at = time.time()
            self.later(c.recreate_gap, lambda ident=ident: self.undo(ident, f"re-create endpoint {r.endpoint}", recreate))
            self.aws.call("DELETE", f"/_sim/endpoints?endpoint={urllib.parse.quote(r.endpoint)}", account=r.account)
            self.ownership.foreign_gone(r.resource_id)
        elif kind == "foreign-policy":
            live = [
                r for r in self.resources.values()
                if r.deleted_at is None and r.account == OWN and not r.endpoint_missing
            ]
            if not live:
                log(t0, "chaos: foreign-policy skipped (no live resource)")
                return
            r = self.rng.choice(live)
            n = self.faults_by_kind[kind] + 1
            ident = self.fault_begin(kind)
            try:
                policy = f"{FOREIGN}step-{n}"
                action = f"{FOREIGN}nightly-{n}"
                target = {"ServiceNamespace": "sagemaker", "ResourceId": r.resource_id,
                          "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
                s1, _ = self.aws.aws("AnyScaleFrontendService.PutScalingPolicy", {
                    **target, "PolicyName": policy, "PolicyType": "StepScaling",
                    "StepScalingPolicyConfiguration": {
                        "AdjustmentType": "ChangeInCapacity", "Cooldown": 60,
                        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
                    }}, key="foreign-tool")
                s2, _ = self.aws.aws("AnyScaleFrontendService.PutScheduledAction", {
                    **target, "ScheduledActionName": action, "Schedule": "cron(0 3 * * ? *)",
                    "ScalableTargetAction": {"MinCapacity": 0}}, key="foreign-tool")
                log(t0, f"chaos: a foreign tool put policy {policy} ({s1}) and scheduled action {action} ({s2}) on {r.resource_id} ({r.key})")
                if s1 == 200 and s2 == 200:
                    self.ownership.foreign_planted(r.resource_id)
            finally:
                self.fault_end(ident)

    def count_in_log(self, text: str) -> int:
        try:
            return self.controlplane_log.read_text().count(text)
        except OSError:
            return 0

    def instances_in_use(self, account: str, instance_type: str) -> int:
        endpoints = self.aws.call("GET", "/_sim/endpoints", account=account)["endpoints"]
        types = self.endpoint_types(account)
        return sum(
            e["inService"] + e["starting"]
            for e in endpoints
            if types.get(e["endpoint"]) == instance_type
        )

    def endpoint_types(self, account: str) -> dict[str, str]:
        types = {
            name: t for (a, t), names in self.foreign_endpoints.items() if a == account for name in names
        }
        types.update({r.endpoint: r.instance_type for r in self.resources.values() if r.account == account})
        return types

    # ---- churn and traffic -----------------------------------------------------------------

    def churn(self) -> None:
        rng = self.churn_rng
        live = [name for name, r in self.resources.items()
                if r.deleted_at is None and name not in self.unsure_deletes]
        choice = rng.random()
        # The fleet stays about N: deletes refused during an outage would otherwise let creates
        # win (the hour at 8a6c9c9 ended with 364 resources for 300), and RSS, which follows the
        # fleet's size, would grow with it and pass for a leak.
        if choice < 1 / 3 and len(live) > self.config.n:
            choice = 0.5
        if choice < 1 / 3 or len(live) < self.config.n * 0.8 or not live:
            plan = self.new_resource_plan(rng)
            if self.create(plan):
                self.ops["create"] += 1
                log(self.t0, f"churn: created {plan['name']} ({plan['type']}, {plan['account']}, min {plan['min']} max {plan['max']})")
            return
        name = rng.choice(live)
        r = self.resources[name]
        if choice < 2 / 3 and len(live) > self.config.n * 0.8:
            try:
                status, _ = self.kube.call("DELETE", self.kube.aes_path(name), timeout=10)
            except (OSError, http.client.HTTPException, ValueError) as e:
                # Made or not, the API server's list tells (observe).
                self.unsure_deletes[name] = time.time()
                log(self.t0, f"churn: delete {name} got no answer ({e}); the API server's list will tell")
                return
            if status in (200, 202):
                r.deleted_at = time.time()
                self.ops["delete"] += 1
                log(self.t0, f"churn: deleted {name}")
            elif status >= 500:
                self.unsure_deletes[name] = time.time()
            return
        plan = self.specs[name]
        field = rng.choice(["min", "max", "target"])
        if field == "min":
            plan["min"] = 1 - plan["min"]
        elif field == "max":
            plan["max"] = rng.choice([v for v in (2, 3, 4) if v != plan["max"]])
        else:
            plan["target"] = rng.choice([v for v in (3, 5, 8) if v != plan["target"]])
        patch = {"spec": {"minCapacity": plan["min"], "maxCapacity": plan["max"],
                          "targetTracking": {"targetValue": plan["target"]}}}
        try:
            status, _ = self.kube.call("PATCH", self.kube.aes_path(name), patch,
                                       content_type="application/merge-patch+json", timeout=10)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # Whether it applied, the object's generation tells (observe).
            log(self.t0, f"churn: edit {name} got no answer ({e})")
            return
        if status == 200:
            self.ops["edit"] += 1
            log(self.t0, f"churn: edited {name}: min {plan['min']} max {plan['max']} target {plan['target']}")

    def traffic(self, seconds: float) -> None:
        """Requests for each live endpoint: a day-shaped load on the simulated clock, so that
        each endpoint is idle (at zero) half its day and busy the other half."""
        sim_seconds = seconds * self.config.time_scale
        day = 7200.0  # simulated seconds: a "day" of two simulated hours
        now = time.time() * self.config.time_scale
        for r in self.resources.values():
            if r.deleted_at is not None or r.endpoint_missing:
                continue
            # crc32, not hash(): the same phase in every run (str hashes are salted per process).
            phase = (zlib.crc32(r.endpoint.encode()) % 1000) / 1000.0
            level = math.sin(2 * math.pi * (now / day + phase))
            if level <= 0.2:
                continue
            per_minute = 24.0 * level
            mean = per_minute * sim_seconds / 60.0
            count = poisson(self.traffic_rng, mean)
            if count:
                try:
                    self.aws.call("POST", "/_sim/requests", {"endpoint": r.endpoint, "count": count}, account=r.account)
                except (OSError, http.client.HTTPException):
                    pass

    # ---- observation -----------------------------------------------------------------------

    def watch_lease(self) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/asyncscale-leader"
        while not self.stop:
            try:
                asked = time.time()
                status, lease = self.kube.call("GET", path)
                if status == 200:
                    spec = lease.get("spec", {})
                    holder = spec.get("holderIdentity")
                    renewed = micro_time(spec.get("renewTime"))
                    if holder and renewed:
                        with self.lock:
                            if holder != self.holder:
                                log(self.t0, f"lease: {holder} holds the Lease")
                                if self.holder is not None:
                                    self.takeover_at = time.time()
                            if renewed != self.last_renewed:
                                self.last_renewed = renewed
                                with open(self.work / "lease.jsonl", "a") as f:
                                    f.write(json.dumps({"holder": holder, "renewTime": renewed}) + "\n")
                            self.holder = holder
                            self.one_writer.lease_seen(holder, renewed)
                            self.lease_seen_at = time.time()
                    with self.lock:
                        # Every renewal made before `asked` is in what was read.
                        self.lease_read_at = asked
            except (OSError, ValueError, http.client.HTTPException):
                pass
            except Exception as e:  # noqa: BLE001
                # A thread that dies here leaves the one-writer check without renewals: every
                # later write would look unfenced. Say so and go on.
                log(self.t0, f"lease watch: {e!r}")
            time.sleep(0.2)

    def read_call_log(self) -> list[dict]:
        """The endpoint's call log since the last read, judged page by page as it comes (a page
        read is never lost to a later page failing)."""
        entries: list[dict] = []
        while True:
            page = self.aws.call("GET", f"/_sim/log?since={self.log_seq}&limit=20000")
            batch = page["entries"]
            if not batch:
                break
            if batch[0]["seq"] > self.log_seq + 1:
                # The log is bounded: what fell out of it before it was read was never judged.
                lost = batch[0]["seq"] - self.log_seq - 1
                self.violations.append(inv.Violation(
                    HARNESS, time.time(),
                    f"{lost} call log entries were dropped before the harness read them "
                    f"(dropped in all: {page.get('dropped')}): the one-writer check never saw them"))
            self.log_seq = batch[-1]["seq"]
            with open(self.work / "calls.jsonl", "a") as f:
                f.writelines(json.dumps(e) + "\n" for e in batch)
            with self.lock:
                found = self.one_writer.calls(batch, observed_until=self.lease_read_at)
            found += self.ownership.calls(batch)
            self.report_found(found)
            entries += batch
            if len(batch) < 20000:
                break
        return entries

    def report_found(self, found: list[inv.Violation]) -> None:
        for v in found:
            print(v.line(self.t0), flush=True)
        self.violations += found

    def follow_listing(self, now: float, present: dict[str, dict]) -> None:
        """Brings the harness's picture of the resources in line with the API server's: creates
        and deletes that got no answer, edits (a new generation), deletions seen as they happen."""
        for name, plan in list(self.unsure_creates.items()):
            if name in present:
                log(self.t0, f"churn: create {name} had been made after all")
                self.adopt(plan, now)
                self.ops["create"] += 1
            elif now - plan["asked_at"] > 2 * self.config.resync:
                del self.unsure_creates[name]
        for name, asked_at in list(self.unsure_deletes.items()):
            r = self.resources.get(name)
            item = present.get(name)
            if r is None:
                del self.unsure_deletes[name]
            elif item is None or item["metadata"].get("deletionTimestamp"):
                log(self.t0, f"churn: delete {name} had been made after all")
                r.deleted_at = asked_at
                self.ops["delete"] += 1
                del self.unsure_deletes[name]
            elif now - asked_at > 10:
                # Still there, not being deleted: the delete never arrived.
                del self.unsure_deletes[name]
        for name, r in self.resources.items():
            item = present.get(name)
            if r.deleted_at is not None or item is None:
                if r.deleted_at is None and item is None and name not in self.unsure_deletes:
                    log(self.t0, f"{r.key} is gone from the API server, deleted by no one the soak knows")
                    r.deleted_at = now
                continue
            meta = item["metadata"]
            if meta.get("deletionTimestamp"):
                r.deleted_at = r.deleted_at or now
                continue
            generation = meta.get("generation")
            if generation != r.generation:
                spec = item.get("spec") or {}
                if r.generation is not None:
                    r.changed_at = now
                r.generation = generation
                r.min_capacity = spec.get("minCapacity", r.min_capacity)
                r.zero_by_schedule = any(
                    s.get("minCapacity") == 0 for s in spec.get("schedules") or []
                )

    def observe(self, now: float) -> None:
        found: list[inv.Violation] = []
        # The clocks of "within a resync" start once the first fleet converged (creating N
        # resources at once takes longer than a resync at AWS's rates, 3 alarms a second) and
        # once the last fault that disturbs every resource is over.
        disturbed = any(kind in self.DISTURBING for kind, _ in self.faults_on.values())
        quiet_since = now if disturbed or not self.converged else max(self.last_disturbance_end, self.converged_at)
        # The call log: who wrote what, when.
        entries = self.read_call_log()
        quiet = (
            self.converged
            and not self.faults_on
            and now - self.last_fault_end > 2 * self.config.resync
        )
        if quiet:
            self.quiet_calls += sum(
                1 for e in entries if e.get("key") in REPLICAS or e.get("sourceKey") in REPLICAS
            )
        # AWS's state, per account.
        states, all_endpoints, managed_max, other_use = {}, {}, Counter(), Counter()
        for account in (OWN, OTHER):
            st = self.aws.call("GET", "/_sim/state", account=account)
            states[account] = st
            endpoints = self.aws.call("GET", "/_sim/endpoints", account=account)["endpoints"]
            all_endpoints[account] = endpoints
            types = self.endpoint_types(account)
            managed_ids = {
                t["ResourceId"]: t["MaxCapacity"]
                for t in st["ScalableTargets"]
                if (t.get("Tags") or {}).get(inv.MANAGED_BY_TAG)
            }
            for e in endpoints:
                t = types.get(e["endpoint"])
                if t is None:
                    continue
                key = (account, t)
                if e["resourceId"] in managed_ids:
                    managed_max[key] += managed_ids[e["resourceId"]]
                else:
                    other_use[key] += e["inService"] + e["starting"]
            type_of = {f"endpoint/{name}/variant/AllTraffic": t for name, t in types.items()}
            found += self.quota.failed_activities(now, account, st.get("FailedActivities", []), type_of)
        over = self.quota.sums(now, dict(self.quotas), managed_max, other_use, quiet_since=quiet_since)
        if over:
            # The evidence: every target and endpoint of the accounts at that moment.
            with open(self.work / f"quota-violation-{now - self.t0:.0f}s.json", "w") as f:
                json.dump({"states": states, "endpoints": all_endpoints, "quotas": {f"{a}/{t}": q for (a, t), q in self.quotas.items()},
                           "types": {a: self.endpoint_types(a) for a in (OWN, OTHER)}}, f)
        found += over
        # The controllers' logs: visits and failures (read before the checks of visits, so that
        # a visit of the last second counts).
        for replica in self.replicas.values():
            for line in replica.new_lines():
                fields = line.get("fields", {})
                message = fields.get("message", "")
                at = micro_time(line.get("timestamp")) or now
                if message == "reconciling" and fields.get("resource"):
                    self.visits.visited(fields["resource"], at)
                    self.starts_per_10s[int((at - self.t0) // 10)] += 1
                elif message == "reconciled" and fields.get("resource"):
                    self.visits.finished(fields["resource"], at)
                    for since, pending in self.cold.values():
                        if at >= since:
                            pending.discard(fields["resource"])
                elif fields.get("took_ms") is not None and "freed memory" in message:
                    self.trims_ms.append(int(fields["took_ms"]))
                elif message == "reconcile failed":
                    self.reconcile_errors[fields.get("kind", "?")] += 1
                    if fields.get("resource") and fields.get("retry_in_s") is not None:
                        self.visits.failed(fields["resource"], at, float(fields["retry_in_s"]))
        with self.lock:
            takeover, self.takeover_at = self.takeover_at, None
        if takeover is not None and self.converged:
            self.begin_cold(takeover)
        for ident, (since, pending) in list(self.cold.items()):
            pending.intersection_update(x.key for x in self.resources.values() if x.deleted_at is None)
            if not pending or now - since > COLD_START_LIMIT:
                del self.cold[ident]
                self.cold_starts.append(now - since)
                if pending:
                    log(self.t0, f"cold start: {len(pending)} resource(s) still not reconciled {now - since:.0f}s after the leader started")
                self.fault_end(ident)
        # The resources, as the API server has them.
        try:
            status, listing = self.kube.call("GET", self.kube.aes_path())
        except (OSError, http.client.HTTPException, ValueError):
            status, listing = 0, None
        ready, total = 0, 0
        if status == 200:
            present = {item["metadata"]["name"]: item for item in listing["items"]}
            self.follow_listing(now, present)
            scoped_on = {self.fault_scope[i] for i in self.faults_on if i in self.fault_scope}
            quiet_by_key = {
                r.key: now if (r.account, r.instance_type) in scoped_on
                else self.scope_quiet.get((r.account, r.instance_type), 0.0)
                for r in self.resources.values()
            }
            effective, not_ready, unready_required = {}, [], 0
            excused: set[str] = set()
            waiting: set[str] = set()
            for name, r in self.resources.items():
                item = present.get(name)
                if r.deleted_at is not None:
                    if item is None and not r.endpoint_removed:
                        # Gone (the finalizer ran): its endpoint leaves the account too.
                        try:
                            self.aws.call("DELETE", f"/_sim/endpoints?endpoint={urllib.parse.quote(r.endpoint)}",
                                          account=r.account)
                            r.endpoint_removed = True
                        except urllib.error.HTTPError as e:
                            r.endpoint_removed = e.code == 404
                        except (OSError, http.client.HTTPException):
                            pass  # again next round
                    continue
                if item is None:
                    continue
                total += 1
                status_ = item.get("status") or {}
                effective[r.key] = status_.get("effectiveMaxCapacity")
                if any(c.get("type") == "Ready" and c.get("reason") == "WaitingForQuota"
                       for c in status_.get("conditions", [])):
                    waiting.add(r.key)
                is_ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status_.get("conditions", [])
                )
                ready_reason = next(
                    (c.get("reason") for c in status_.get("conditions", []) if c.get("type") == "Ready"), None
                )
                ready += is_ready
                settled = now - r.changed_at > inv.longest_resync(self.config.resync) + self.config.grace
                if not is_ready and (r.changed_at <= self.fleet_created_at or settled):
                    # The first fleet all of it; churn's resources once they had a resync.
                    unready_required += 1
                if not is_ready and not r.endpoint_missing and settled:
                    not_ready.append(r.key)
                    # Judged a recovery limit after the dip's aftermath: it shows at the next visit.
                    aftermath = DIP_AFTERMATH + self.recovery.limit
                    dipped = now - self.scope_quiet.get((r.account, r.instance_type), -aftermath) < aftermath
                    if dipped or ready_reason in WAITING_ON_THE_QUOTA:
                        excused.add(r.key)
            if not self.converged and self.fleet_created_at and unready_required == 0:
                self.converged = True
                self.converged_at = now
                self.recovery.burst_ended(now)
                log(self.t0, f"fleet: all {total} resources Ready")
            found += self.ownership.state(now, quiet_since, list(self.resources.values()), states, effective,
                                          present=set(present), quiet_by_key=quiet_by_key, waiting=waiting)
            found += self.recovery.ready(now, not_ready, frozenset(excused))
            live = {
                r.key: max(r.changed_at, quiet_by_key[r.key]) for r in self.resources.values()
                if r.deleted_at is None and r.key.split("/")[1] in present
            }
            found += self.visits.check(now, quiet_since, live)
            if quiet:
                self.quiet_endpoint_seconds += len(live)
            # The Lease read too: without it the one-writer check waits (Coverage counts that).
            self.looked = time.time() - self.lease_read_at < 10
            self.armed = self.converged and now >= quiet_since + self.config.resync + self.config.grace
        read = [self.replicas[n].rss() for n in REPLICAS]
        for name, value in zip(REPLICAS, read):
            r = self.replicas[name]
            if value is not None:
                self.memory.sample(
                    r.proc.pid, name, r.started, now, value[0], leading=name == self.holder, file=value[1]
                )
        rss = [value[0] if value else None for value in read]
        self.series.append((now, ready, total, *(v / 1e6 if v else None for v in rss), len(self.faults_on)))
        self.report_found(found)

    def check_processes(self) -> None:
        """A replica that exited without the harness stopping it crashed (a violation; it is
        started again, as its Deployment would); without the endpoint or the control plane the
        soak cannot go on."""
        now = time.time()
        for r in self.replicas.values():
            if r.proc is None or r.down_on_purpose or r.proc.poll() is None:
                continue
            if r.reported_exit == r.proc.pid:
                continue
            r.reported_exit = r.proc.pid
            r.crashes += 1
            # Started again as its Deployment would, after a back-off (one that cannot start at
            # all must not be restarted, and reported, every second).
            delay = min(60.0, 2.0 ** r.crashes)
            self.report_found([inv.Violation(
                CRASH, now,
                f"{r.name} (pid {r.proc.pid}) exited with status {r.proc.returncode} "
                f"{now - r.started:.0f}s after it started, not stopped by the soak; started again in "
                f"{delay:.0f}s; its log ends: {r.tail()}")])
            r.down_on_purpose = True
            self.later(delay, lambda r=r: self.guard(f"start {r.name}", r.start))
        for what, p in (("the local AWS endpoint", self.sim), ("the control plane", self.controlplane)):
            if p is not None and p.poll() is not None:
                self.report_found([inv.Violation(
                    HARNESS, now, f"{what} (pid {p.pid}) exited with status {p.returncode}: the soak stops")])
                raise SoakAborted(f"{what} exited")

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        c = self.config
        self.plan_fleet()
        log(self.t0, f"soak: {c.seconds:.0f}s, N={c.n}, SEED={c.seed}, resync {c.resync:.0f}s, "
                     f"time scale {c.time_scale:g}, work dir {self.work}")
        outcome = "interrupted"
        try:
            self.start_processes()
            self.plant_foreign_endpoints()
            threading.Thread(target=self.watch_lease, daemon=True).start()
            created = sum(self.create(p) for p in self.initial)
            self.fleet_created_at = time.time()
            log(self.t0, f"fleet: {created} resources created; quotas {dict((f'{t}@{a[-3:]}', q) for (a, t), q in self.quotas.items())}")
            self.loop()
            self.self_check()
            outcome = "done"
        except SoakAborted as e:
            outcome = f"aborted: {e}"
        except StartFailed as e:
            outcome = f"could not start: {e}"
            log(self.t0, outcome)
        finally:
            self.stop = True
            # A second Ctrl-C or SIGTERM must not cut the cleanup short (processes left behind).
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                try:
                    self.cleanup()
                finally:
                    self.report(outcome)
                    failed = bool(self.counted_violations()) or outcome != "done"
                    if failed or os.environ.get("KEEP"):
                        print(f"kept for reading: {self.work} (the replicas' logs, calls.jsonl, lease.jsonl)", flush=True)
                    else:
                        shutil.rmtree(self.work, ignore_errors=True)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return 1 if failed else 0

    def loop(self) -> None:
        c = self.config
        # The first fleet converges before the clock starts: a fault during its creation would
        # leave the checks that wait for a converged fleet nothing to look at, and how long
        # creation takes depends on the machine (a busy CI runner), not on the schedule.
        deadline = time.time() + max(c.warm, 180.0)
        while not self.converged and time.time() < deadline:
            tick = time.time()
            self.check_processes()
            try:
                self.observe(tick)
                self.checks += 1
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                log(self.t0, f"observe: {e!r}")
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        start = time.time()
        # SOAK_SECONDS count from here: the start-up (a minute, on a busy machine) takes none of
        # the time the schedule was planned for.
        end = start + c.seconds
        # Warm-up before the first fault, for the fleet to converge; every fault over
        # `tail` (three resyncs) before the end, for the final recovery and the quiet checks.
        events = self.schedule(start + c.warm, end - c.tail)
        log(self.t0, "chaos schedule: " + ", ".join(f"{e - self.t0:.0f}s {k}" for e, k in events))
        if self.leader_spell:
            a, b = (x - self.t0 for x in self.leader_spell)
            log(self.t0, f"chaos schedule: nothing moves the Lease from {a:.0f}s to {b:.0f}s (a leader's memory is judged there)")
        churn_every = 60.0 / (c.churn_per_minute * c.n)
        next_churn = start + c.warm
        next_traffic = start
        while time.time() < end:
            tick = time.time()
            self.check_processes()
            while events and events[0][0] <= tick:
                _, kind = events.pop(0)
                self.guard(f"chaos {kind}", lambda kind=kind: self.inject(kind))
            self.run_timers(tick)
            self.follow_restarts(tick)
            if tick >= next_churn and tick < end - c.tail:
                self.guard("churn", self.churn)
                next_churn += churn_every
            if tick >= next_traffic:
                self.guard("traffic", lambda: self.traffic(2.0))
                next_traffic += 2.0
            self.round_of_checks(tick)
        # Faults still on (none should be: the schedule ends them `tail` before the end).
        while self.timers:
            self.run_timers(float("inf"))
        deadline = time.time() + 180
        while self.pending_restarts and time.time() < deadline:
            self.follow_restarts(time.time())
            time.sleep(0.5)
        self.follow_restarts(float("inf"))
        # The last fault's judgments (recovery, a reaction window, the quiet checks) each need
        # their time after it: the checks go on (no fault, no churn, the traffic on) until they
        # had it, or until they cannot have had it, and then the coverage check says so.
        settle = max(self.recovery.limit, self.quota.reaction_limit) + 1
        latest = self.last_fault_end + 3 * c.resync + 2 * c.grace + 30
        settling = time.time()
        while time.time() < latest:
            tick = time.time()
            if (
                tick - self.last_fault_end > settle
                and (self.coverage.armed_after or 0.0) >= c.resync
                and self.recovery.waiting_since is None
            ):
                break
            self.check_processes()
            if tick >= next_traffic:
                self.guard("traffic", lambda: self.traffic(2.0))
                next_traffic += 2.0
            self.round_of_checks(tick)
        if time.time() - settling >= 1:
            log(self.t0, f"settled: looked {time.time() - settling:.0f}s past the end, for the last fault's judgments")
        self.report_found(self.coverage.finish(time.time(), after_last_fault=c.resync))
        # Every kind is scheduled at least once; one never injected (its injection failed, or
        # found nothing to act on) is a soak that did not test what it says.
        missed = [k for k in Soak.KINDS if self.faults_by_kind[k] == 0]
        if missed:
            self.report_found([inv.Violation(
                HARNESS, time.time(), f"never injected: {', '.join(missed)} (see the log above)")])

    def round_of_checks(self, tick: float) -> None:
        """One round: observe everything, check every invariant, then wait out the second."""
        self.looked = False
        try:
            self.observe(tick)
            self.checks += 1
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            log(self.t0, f"observe: {e!r}")
        self.report_found(self.coverage.round(
            tick, self.converged, bool(self.faults_on), self.looked, self.armed and self.looked))
        self.check_seconds.append(time.time() - tick)
        time.sleep(max(0.0, 1.0 - (time.time() - tick)))

    def run_timers(self, now: float) -> None:
        for due, action in sorted([t for t in self.timers if t[0] <= now], key=lambda t: t[0]):
            self.timers.remove((due, action))
            self.guard("chaos", action)

    def follow_restarts(self, now: float) -> None:
        """A restart ends when the control plane says `… up`; one that never does (the control
        plane stuck, a command it refused) ends after 150 s as a violation, not never."""
        for pending in list(self.pending_restarts):
            which, ident, done_at, asked = pending
            if self.count_in_log(f"{which} up") >= done_at:
                self.pending_restarts.remove(pending)
                self.fault_end(ident)
            elif now - asked > 150:
                self.pending_restarts.remove(pending)
                self.report_found([inv.Violation(
                    HARNESS, time.time(),
                    f"{which} did not come back {time.time() - asked:.0f}s after its restart (see {self.controlplane_log})")])
                self.fault_end(ident)

    def guard(self, what: str, action) -> None:
        """The harness's own calls meet the faults it injects (a hung operation, an API server
        down): one that fails is logged and the soak goes on."""
        try:
            action()
        except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as e:
            log(self.t0, f"{what}: the harness's own call failed: {e!r}")

    def self_check(self) -> None:
        """Shows that the one-writer check can fail: a write signed with the keys of the replica
        that does not hold the Lease must be reported. It is then left out of the verdict."""
        standby = next((n for n in REPLICAS if n != self.holder), REPLICAS[1])
        before = len(self.violations)
        try:
            self.self_check_write(standby)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            log(self.t0, f"self-check: could not run ({e!r})")
        fired = [v for v in self.violations[before:] if v.invariant == inv.OneWriter.name and "self-check" in v.message]
        self.self_check_ok = bool(fired)
        for v in fired:
            self.violations.remove(v)
        log(self.t0, "self-check: the one-writer check " + (
            f"fired on a write signed with {standby}'s keys (the standby): it can fail" if fired
            else "did NOT fire on a write signed with the standby's keys: the checks are blind"))

    def self_check_write(self, standby: str) -> None:
        self.aws.aws("AnyScaleFrontendService.PutScalingPolicy", {
            "ServiceNamespace": "sagemaker", "ResourceId": "endpoint/soak-self-check/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "PolicyName": "self-check",
            "PolicyType": "StepScaling"}, key=standby)
        time.sleep(1.0)
        self.observe(time.time())
        # Whatever still waits for a later read of the Lease is judged now, on what was seen.
        with self.lock:
            self.report_found(self.one_writer.calls([]))

    def counted_violations(self) -> list[inv.Violation]:
        # Not run (a soak interrupted or aborted, which fails anyway) is not "did not fire".
        ran = getattr(self, "self_check_ok", None)
        extra = [inv.Violation("self-check", time.time(), "the one-writer check did not fire")] if ran is False else []
        return self.violations + extra

    # ---- the report ------------------------------------------------------------------------

    def report(self, outcome: str = "done") -> None:
        c = self.config
        c.out.mkdir(parents=True, exist_ok=True)
        memory_violations, memory_lines = self.memory.judge()
        self.violations += memory_violations
        names = [inv.OneWriter.name, inv.QuotaShare.name, inv.Ownership.trap1, inv.Ownership.lost,
                 inv.Ownership.left, inv.Ownership.foreign, inv.Recovery.name, inv.Visits.name,
                 inv.Memory.name, CRASH, inv.Coverage.converged, inv.Coverage.looked,
                 inv.Coverage.armed, HARNESS]
        held = self.one_writer.held_while_paused
        by_invariant = Counter(v.invariant for v in self.counted_violations())
        per_resync = (
            self.quiet_calls / (self.quiet_endpoint_seconds / c.resync)
            if self.quiet_endpoint_seconds else float("nan")
        )
        lines = [
            f"# Soak: {c.seconds:.0f} s, N={c.n}, SEED={c.seed}, resync {c.resync:.0f} s, time scale {c.time_scale:g}",
            "",
            *([] if outcome == "done" else [f"**The soak did not finish ({outcome}): what follows covers the part that ran.**", ""]),
            "| faults injected | count |", "|---|---|",
            *[f"| {k} | {self.faults_by_kind.get(k, 0)} |" for k in self.KINDS],
            f"| churn (create / edit / delete) | {self.ops['create']} / {self.ops['edit']} / {self.ops['delete']} |",
            "",
            "| invariant | violations |", "|---|---|",
            *[f"| {n} | {by_invariant.get(n, 0)} |" for n in names],
            *([f"| self-check | {by_invariant['self-check']} |"] if by_invariant.get("self-check") else []),
            "",
            f"- checks: {self.checks} rounds; a round (faults, churn, traffic, reading AWS, the API "
            f"server and the logs, every check) took {percentile(self.check_seconds, 0.5):.2f} s "
            f"at the median, {percentile(self.check_seconds, 0.99):.2f} s at p99",
            f"- one-writer check: {self.one_writer.writes_checked} writes by the replicas checked against the Lease; "
            f"margin {LEASE_SECONDS - LEASE_SECONDS * 2 / 3:.0f} s (the Lease's {LEASE_SECONDS:.0f} s less the renew deadline's {LEASE_SECONDS * 2 / 3:.0f} s)"
            + (f"; {len(self.one_writer.pending)} left unjudged (answered after the last read of the Lease)" if self.one_writer.pending else ""),
            f"- writes sent within the Lease but answered past it, held by an injected hang while the harness had the "
            f"replica stopped (no violation: a stopped process cannot give up on a request): {len(held)}"
            + "".join(f"\n  - {h}" for h in held[:10]),
            f"- the quiet checks (nothing lost, trap 1, nothing left, no stuck resource) were armed for "
            f"{self.coverage.armed_seconds:.0f} s of the run; the fleet first converged "
            + (f"{self.coverage.converged_at - self.t0:.0f} s in" if self.coverage.converged_at else "never"),
            f"- longest recovery after a burst: {self.recovery.longest:.0f} s (limit {self.recovery.limit:.0f} s; {len(self.recovery.recoveries)} bursts); "
            f"with the resources a quota dip excused, not judged: {self.recovery.longest_all:.0f} s",
            f"- a new leader's cold start (from its takeover or restart until every live resource was reconciled once): "
            + (", ".join(f"{x:.0f} s" for x in self.cold_starts) or "none") + f" (limit {COLD_START_LIMIT:.0f} s)",
            "- quota windows opened by the soak's own lowering: "
            + (", ".join(f"{w} {s:.0f} s" for w, s in self.quota.windows) or "none closed"),
            "- over the quota within the reaction limit after other endpoints grew (an endpoint "
            + f"re-created with an instance): {len(self.quota.reactions)} time(s), longest "
            + (f"{max(s for _, s in self.quota.reactions):.0f} s" if self.quota.reactions else "-")
            + f" (limit {self.quota.reaction_limit:.0f} s)",
            f"- AWS calls per endpoint per resync outside the bursts (churn included): {per_resync:.2f}",
            f"- memory: {self.memory.judged()} (replica, role) judged over ten minutes or more"
            + (
                f"; no fault moved the Lease from {self.leader_spell[0] - self.t0:.0f} s to {self.leader_spell[1] - self.t0:.0f} s"
                if getattr(self, "leader_spell", None)
                else ""
            ),
            *[f"- {line}" for line in memory_lines],
            f"- reconcile failures logged, by kind: {dict(self.reconcile_errors) or 'none'}",
            herd_line(self.starts_per_10s, self.config.resync),
            "- freed memory given back (malloc_trim, once a minute): "
            + (f"{len(self.trims_ms)} times, {statistics.median(self.trims_ms):.0f} ms at the median, "
               f"{max(self.trims_ms)} ms at the longest" if self.trims_ms else "not logged"),
        ]
        total = len(self.counted_violations())
        # The violations again, last, with their count: a CI log often keeps only its tail.
        found = [v.line(self.t0) for v in self.counted_violations()]
        lines += ["", *found, *([""] if found else []), f"**{total} violation(s).**"]
        text = "\n".join(lines)
        print("\n" + text, flush=True)
        (c.out / "report.md").write_text(text + "\n")
        (c.out / "soak.svg").write_text(self.chart())
        print(f"report: {c.out / 'report.md'}, chart: {c.out / 'soak.svg'}", flush=True)

    def chart(self) -> str:
        width, height, left, top, bottom = 1000, 380, 60, 30, 60
        plot_w, plot_h = width - left - 70, height - top - bottom
        if not self.series:
            return "<svg xmlns='http://www.w3.org/2000/svg'/>"
        t_start, t_end = self.t0, max(self.series[-1][0], self.t0 + 1)
        x = lambda t: left + (t - t_start) / (t_end - t_start) * plot_w  # noqa: E731
        top_count = max(1, max(s[2] for s in self.series))
        y = lambda v: top + plot_h - v / top_count * plot_h  # noqa: E731
        rss_max = max([v for s in self.series for v in (s[3], s[4]) if v] or [1]) * 1.2
        y_rss = lambda v: top + plot_h - v / rss_max * plot_h  # noqa: E731
        parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' font-size='11'>",
            f"<rect width='{width}' height='{height}' fill='white'/>",
            f"<text x='{left}' y='18' font-size='13'>asyncscale soak: resources Ready, faults, controller anonymous RSS (SEED {self.config.seed}, N {self.config.n})</text>",
        ]
        colors = {"kill-leader": "#d62728", "pause-leader": "#ff7f0e", "apiserver-restart": "#9467bd",
                  "etcd-restart": "#8c564b", "aws-burst": "#e377c2", "aws-hang": "#7f7f7f",
                  "quota-dip": "#bcbd22", "endpoint-recreate": "#17becf", "foreign-policy": "#1f77b4"}
        for kind, a, b in self.fault_spans:
            parts.append(f"<rect x='{x(a):.1f}' y='{top}' width='{max(1.5, x(b) - x(a)):.1f}' height='{plot_h}' fill='{colors.get(kind, '#ccc')}' opacity='0.25'><title>{kind}</title></rect>")
        def path(points, color, dash=""):
            d = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(points))
            return f"<path d='{d}' fill='none' stroke='{color}' stroke-width='1.5' {dash}/>"
        parts.append(path([(x(s[0]), y(s[2])) for s in self.series], "#999", "stroke-dasharray='4 3'"))
        parts.append(path([(x(s[0]), y(s[1])) for s in self.series], "#2ca02c"))
        for i, color in ((3, "#1f77b4"), (4, "#d62728")):
            pts = [(x(s[0]), y_rss(s[i])) for s in self.series if s[i]]
            if pts:
                parts.append(path(pts, color, "stroke-dasharray='2 2'"))
        parts += [
            f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='black'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' stroke='black'/>",
            f"<text x='{left - 5}' y='{top + 4}' text-anchor='end'>{top_count}</text>",
            f"<text x='{left - 5}' y='{top + plot_h}' text-anchor='end'>0</text>",
            f"<text x='{left + plot_w + 5}' y='{top + 4}'>{rss_max:.0f} MB</text>",
            f"<text x='{left + plot_w / 2}' y='{height - 25}' text-anchor='middle'>seconds since start (0 to {t_end - t_start:.0f})</text>",
            f"<text x='{left}' y='{height - 8}' fill='#2ca02c'>— Ready</text>",
            f"<text x='{left + 70}' y='{height - 8}' fill='#999'>-- resources</text>",
            f"<text x='{left + 170}' y='{height - 8}' fill='#1f77b4'>·· RSS replica-a</text>",
            f"<text x='{left + 280}' y='{height - 8}' fill='#d62728'>·· RSS replica-b</text>",
            *[
                f"<text x='{left + 380 + 105 * (i % 5)}' y='{height - 20 + 12 * (i // 5)}' fill='{color}'>■ {kind}</text>"
                for i, (kind, color) in enumerate(colors.items())
            ],
            "</svg>",
        ]
        return "\n".join(parts)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, int(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class SoakAborted(Exception):
    """The soak cannot go on (the endpoint or the control plane is gone)."""


class StartFailed(Exception):
    """A process of the soak did not start; the message says which and where its log is."""


def wait_for(path: Path, text: str, seconds: float, parse=None, process: subprocess.Popen | None = None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            for line in path.read_text().splitlines():
                if text in line:
                    return parse(line) if parse else line
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise StartFailed(
                f"{process.args[0]} exited with status {process.returncode} before {text!r}; its log: {path}"
            )
        time.sleep(0.2)
    raise StartFailed(f"timed out after {seconds:.0f}s waiting for {text!r} in {path}")


def controlplane_dir(kubeconfig: Path) -> Path | None:
    """The control plane's own directory: where the kubeconfig's certificate authority is."""
    try:
        config = yaml.safe_load(kubeconfig.read_text())
        found = Path(config["clusters"][0]["cluster"]["certificate-authority"]).parent
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None
    # Only a directory the control plane made for itself (crates/controlplane): never remove,
    # nor stop the processes naming, anything broader.
    return found if found.name.startswith("asyncscale-controlplane-") else None


def processes_naming(text: str) -> list[int]:
    """The pids whose command line contains `text` (a directory unique to one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def kubectl(kubeconfig: Path, *args: str) -> None:
    subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    try:
        config = Config()
    except ConfigError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 2
    # SIGTERM and SIGHUP stop the soak as Ctrl-C does: the cleanup runs, the report is written.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _: sys.exit(128 + number))
    soak = Soak(config)
    try:
        return soak.run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
