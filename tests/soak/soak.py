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
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


class Config:
    def __init__(self) -> None:
        self.seconds = float(env("SOAK_SECONDS", "3600"))
        self.n = int(env("N", "300"))
        self.seed = int(env("SEED", "1"))
        self.compressed = env("SCHEDULE", "random") == "compressed"
        self.resync = float(env("RESYNC_SECONDS", "20" if self.compressed else "30"))
        self.time_scale = float(env("TIME_SCALE", "10"))
        self.bin = env("ASYNCSCALE_BIN", str(ROOT / "target/debug/asyncscale"))
        self.controlplane = env(
            "CONTROLPLANE_TOOL", str(ROOT / "target/debug/asyncscale-controlplane")
        )
        self.out = Path(env("OUT", str(ROOT / "target/soak")))
        self.grace = 10.0
        # Fault lengths: the in a full soak, shorter when compressed into minutes.
        short = self.compressed
        self.burst_seconds = 20.0 if short else 60.0
        self.hang_seconds = 30.0 if short else 120.0
        self.pause_seconds = LEASE_SECONDS + 5.0
        self.dip_seconds = 30.0 if short else 420.0
        self.recreate_gap = 10.0 if short else 20.0
        self.churn_per_minute = 0.10


def log(t0: float, message: str) -> None:
    print(f"[{time.time() - t0:8.1f}s] {message}", flush=True)


def micro_time(text: str | None) -> float | None:
    if not text:
        return None
    text = text.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    return (
        datetime.datetime.strptime(text, fmt)
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
    )


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

    def call(self, method: str, path: str, body: object = None, content_type: str = "application/json"):
        # Short: a round of checks must not wait long on an API server that is down.
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=2)
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

    def start(self) -> None:
        c = self.soak.config
        environment = dict(
            os.environ,
            KUBECONFIG=str(self.soak.kubeconfig),
            AWS_ACCESS_KEY_ID=self.name,
            AWS_SECRET_ACCESS_KEY="soak",
            AWS_EC2_METADATA_DISABLED="true",
            RUST_LOG="info,asyncscale_controller::reconciler=debug",
        )
        environment.pop("AWS_SESSION_TOKEN", None)
        args = [
            c.bin, "--log-format", "json", "run", "--leader-elect", "--pod-name", self.name,
            "--resync", f"{int(c.resync)}s", "--lease-duration", f"{int(LEASE_SECONDS)}s",
            "--aws-endpoint", self.soak.aws.url, "--region", "us-east-1",
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}", "--namespace", NAMESPACE,
        ]
        self.proc = subprocess.Popen(
            args, env=environment, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab")
        )
        self.started = time.time()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int | None:
        if not self.alive():
            return None
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

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
        self.rng = random.Random(config.seed)
        self.work = Path(tempfile.mkdtemp(prefix="asyncscale-soak-"))
        self.kubeconfig = self.work / "kubeconfig"
        self.t0 = time.time()
        self.procs: list[subprocess.Popen] = []
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
            window_limit=c.dip_seconds + 300 + 2 * c.resync + c.grace,
            reaction_limit=2 * c.resync + c.grace,
        )
        self.ownership = inv.Ownership(c.resync, c.grace, set(REPLICAS), FOREIGN)
        self.recovery = inv.Recovery(c.resync)
        self.visits = inv.Visits(c.resync, c.grace)
        warmup = 60.0 if c.compressed else 300.0
        self.memory = inv.Memory(warmup=warmup, min_judged=600.0)

    # ---- processes -------------------------------------------------------------------------

    def start_processes(self) -> None:
        c = self.config
        self.controlplane = subprocess.Popen(
            [c.controlplane, "--kubeconfig", str(self.kubeconfig)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=open(self.controlplane_log, "wb"), text=True,
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
        self.sim = subprocess.Popen(
            [
                c.bin, "sim", "serve", "--listen", "127.0.0.1:0", "--time-scale", str(c.time_scale),
                "--rate-limits", "aws", "--rate-limit", "application-autoscaling:*=10/10",
                "--rate-limit", "sagemaker:*=10/10",
            ],
            stdout=subprocess.DEVNULL, stderr=open(aws_log, "wb"),
        )
        self.procs.append(self.sim)
        url = wait_for(aws_log, "listening on", 60, lambda line: line.split("listening on")[1].split()[0])
        if not url.startswith("http"):
            url = "http://" + url
        self.aws = Aws(url.rstrip("/"))
        wait_for(self.controlplane_log, "control plane ready", 180)
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
        for r in getattr(self, "replicas", {}).values():
            if r.alive():
                r.proc.send_signal(signal.SIGCONT)
                r.proc.kill()
                r.proc.wait()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

    # ---- the fleet -------------------------------------------------------------------------

    def plan_fleet(self) -> None:
        self.initial = [self.new_resource_plan() for _ in range(self.config.n)]

    def new_resource_plan(self) -> dict:
        self.next_name += 1
        i = self.next_name
        account = OTHER if self.rng.random() < 0.2 else OWN
        return {
            "name": f"r{i:04d}",
            "endpoint": f"soak-{i:04d}",
            "account": account,
            "type": TYPES[i % len(TYPES)],
            "min": 0 if self.rng.random() < 0.75 else 1,
            "max": self.rng.choice([2, 3, 4]),
            "target": self.rng.choice([3, 5, 8]),
            "schedules": self.rng.random() < 0.1,
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
            status, body = self.kube.call("POST", self.kube.aes_path(), self.manifest(plan))
        except OSError as e:
            log(self.t0, f"churn: create {plan['name']} failed ({e}); its endpoint stays unmanaged")
            return False
        if status not in (200, 201):
            log(self.t0, f"churn: create {plan['name']} answered {status}: {str(body)[:200]}")
            return False
        self.specs[plan["name"]] = plan
        self.resources[plan["name"]] = inv.Resource(
            key=f"{NAMESPACE}/{plan['name']}", account=plan["account"], endpoint=plan["endpoint"],
            instance_type=plan["type"], min_capacity=plan["min"], changed_at=time.time(),
        )
        return True

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

    def schedule(self, start: float, end: float) -> list[tuple[float, str]]:
        c = self.config
        if c.compressed or end - start < 20 * len(self.KINDS):
            # Too short for a random schedule: every kind once, in a random order.
            end = max(end, start + 10 * len(self.KINDS))
            kinds = list(self.KINDS)
            self.rng.shuffle(kinds)
            step = (end - start) / len(kinds)
            return [(start + i * step, k) for i, k in enumerate(kinds)]
        events, t = [], start
        while t < end:
            kind = self.rng.choice(self.KINDS)
            events.append((t, kind))
            # Now and then two faults together (a leader killed during a burst, say).
            t += self.rng.uniform(10, 40) if self.rng.random() < 0.25 else self.rng.uniform(60, 180)
        # Every kind at least once.
        missing = [k for k in self.KINDS if k not in {k2 for _, k2 in events}]
        for k in missing:
            events.append((self.rng.uniform(start, end), k))
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
        kind, started = self.faults_on.pop(ident)
        now = time.time()
        self.fault_spans.append((kind, started, now))
        self.last_fault_end = now
        log(self.t0, f"fault over: {kind} ({now - started:.0f}s)")
        if not self.faults_on and self.converged:
            self.recovery.burst_ended(now)

    def later(self, seconds: float, action) -> None:
        self.timers.append((time.time() + seconds, action))

    def leader(self) -> Replica | None:
        return self.replicas.get(self.holder) if self.holder else None

    def inject(self, kind: str) -> None:
        c = self.config
        t0 = self.t0
        if kind == "kill-leader":
            r = self.leader()
            if r is None or not r.alive():
                log(t0, "chaos: kill-leader skipped (no live leader)")
                return
            ident = self.fault_begin(kind)
            log(t0, f"chaos: SIGKILL {r.name} (the leader); back in 5s")
            r.proc.kill()
            r.proc.wait()

            def back(r=r, ident=ident):
                r.start()
                self.fault_end(ident)

            self.later(5, back)
        elif kind == "pause-leader":
            r = self.leader()
            if r is None or not r.alive():
                log(t0, "chaos: pause-leader skipped (no live leader)")
                return
            ident = self.fault_begin(kind)
            log(t0, f"chaos: SIGSTOP {r.name} (the leader) for {c.pause_seconds:.0f}s, past the {LEASE_SECONDS:.0f}s Lease")
            r.proc.send_signal(signal.SIGSTOP)

            def resume(r=r, ident=ident):
                if r.alive():
                    r.proc.send_signal(signal.SIGCONT)
                log(t0, f"chaos: SIGCONT {r.name}")
                self.fault_end(ident)

            self.later(c.pause_seconds, resume)
        elif kind in ("apiserver-restart", "etcd-restart"):
            which = kind.split("-")[0]
            down = 5 if which == "apiserver" else 12
            ident = self.fault_begin(kind)
            log(t0, f"chaos: {which} killed, back in {down}s")
            self.pending_restart = (which, ident, self.count_in_log(f"{which} up"))
            self.controlplane.stdin.write(f"restart {which} {down}\n")
            self.controlplane.stdin.flush()
        elif kind == "aws-burst":
            ident = self.fault_begin(kind)
            log(t0, f"chaos: AWS answers 30 % of requests with errors for {c.burst_seconds:.0f}s")
            for account in (OWN, OTHER):
                self.aws.call("POST", "/_sim/fault-rate", {"rate": 0.3, "seed": self.rng.randrange(1 << 30)}, account=account)

            def calm(ident=ident):
                for account in (OWN, OTHER):
                    self.aws.call("POST", "/_sim/fault-rate", {"rate": 0}, account=account)
                self.fault_end(ident)

            self.later(c.burst_seconds, calm)
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
            for account in (OWN, OTHER):
                self.aws.call("POST", "/_sim/faults", {"service": service, "operation": operation, "holdSeconds": c.hang_seconds}, account=account)
            self.later(c.hang_seconds, lambda ident=ident: self.fault_end(ident))
        elif kind == "quota-dip":
            account, t = self.rng.choice(sorted(self.quotas))
            use = self.instances_in_use(account, t)
            lowered = max(0, use - 1)
            ident = self.fault_begin(kind)
            log(t0, f"chaos: quota of {t} in {account} lowered {self.quotas[(account, t)]} -> {lowered} (in use {use}) for {c.dip_seconds:.0f}s")
            self.quotas[(account, t)] = lowered
            self.quota.quota_lowered(account, t, time.time())
            self.aws.call("POST", "/_sim/quotas", {"applied": {t: lowered}}, account=account)

            def restore(account=account, t=t, ident=ident):
                self.quotas[(account, t)] = self.base_quotas[(account, t)]
                self.aws.call("POST", "/_sim/quotas", {"applied": {t: self.base_quotas[(account, t)]}}, account=account)
                log(t0, f"chaos: quota of {t} in {account} back to {self.base_quotas[(account, t)]}")
                self.fault_end(ident)

            self.later(c.dip_seconds, restore)
        elif kind == "endpoint-recreate":
            live = [r for r in self.resources.values() if r.deleted_at is None and not r.endpoint_missing]
            if not live:
                return
            r = self.rng.choice(live)
            ident = self.fault_begin(kind)
            log(t0, f"chaos: endpoint {r.endpoint} ({r.key}) deleted behind asyncscale's back; re-created in {c.recreate_gap:.0f}s")
            self.aws.call("DELETE", f"/_sim/endpoints?endpoint={r.endpoint}", account=r.account)
            r.endpoint_missing = True
            r.changed_at = time.time()

            def recreate(r=r, ident=ident):
                # A real endpoint starts with an instance.
                self.declare_endpoint(r.account, r.endpoint, r.instance_type, 1)
                r.endpoint_missing = False
                r.changed_at = time.time()
                log(t0, f"chaos: endpoint {r.endpoint} re-created")
                self.fault_end(ident)

            self.later(c.recreate_gap, recreate)
        elif kind == "foreign-policy":
            live = [
                r for r in self.resources.values()
                if r.deleted_at is None and r.account == OWN and not r.endpoint_missing
            ]
            if not live:
                return
            r = self.rng.choice(live)
            n = self.faults_by_kind[kind] + 1
            ident = self.fault_begin(kind)
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
        live = [name for name, r in self.resources.items() if r.deleted_at is None]
        choice = self.rng.random()
        if choice < 1 / 3 or len(live) < self.config.n * 0.8:
            plan = self.new_resource_plan()
            if self.create(plan):
                self.ops["create"] += 1
                log(self.t0, f"churn: created {plan['name']} ({plan['type']}, {plan['account']}, min {plan['min']} max {plan['max']})")
            return
        name = self.rng.choice(live)
        r = self.resources[name]
        if choice < 2 / 3 and len(live) > self.config.n * 0.8:
            try:
                status, _ = self.kube.call("DELETE", self.kube.aes_path(name))
            except OSError as e:
                log(self.t0, f"churn: delete {name} failed ({e})")
                return
            if status in (200, 202):
                r.deleted_at = time.time()
                self.ops["delete"] += 1
                log(self.t0, f"churn: deleted {name}")
            return
        plan = self.specs[name]
        field = self.rng.choice(["min", "max", "target"])
        if field == "min":
            plan["min"] = 1 - plan["min"]
        elif field == "max":
            plan["max"] = self.rng.choice([v for v in (2, 3, 4) if v != plan["max"]])
        else:
            plan["target"] = self.rng.choice([v for v in (3, 5, 8) if v != plan["target"]])
        patch = {"spec": {"minCapacity": plan["min"], "maxCapacity": plan["max"],
                          "targetTracking": {"targetValue": plan["target"]}}}
        try:
            status, _ = self.kube.call("PATCH", self.kube.aes_path(name), patch,
                                       content_type="application/merge-patch+json")
        except OSError as e:
            log(self.t0, f"churn: edit {name} failed ({e})")
            return
        if status == 200:
            r.min_capacity = plan["min"]
            r.changed_at = time.time()
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
            phase = (hash(r.endpoint) % 1000) / 1000.0
            level = math.sin(2 * math.pi * (now / day + phase))
            if level <= 0.2:
                continue
            per_minute = 24.0 * level
            mean = per_minute * sim_seconds / 60.0
            count = poisson(self.rng, mean)
            if count:
                try:
                    self.aws.call("POST", "/_sim/requests", {"endpoint": r.endpoint, "count": count}, account=r.account)
                except urllib.error.HTTPError:
                    pass

    # ---- observation -----------------------------------------------------------------------

    def watch_lease(self) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/asyncscale-leader"
        while not self.stop:
            try:
                status, lease = self.kube.call("GET", path)
                if status == 200:
                    spec = lease.get("spec", {})
                    holder = spec.get("holderIdentity")
                    renewed = micro_time(spec.get("renewTime"))
                    if holder and renewed:
                        with self.lock:
                            if holder != self.holder:
                                log(self.t0, f"lease: {holder} holds the Lease")
                            if renewed != self.last_renewed:
                                self.last_renewed = renewed
                                with open(self.work / "lease.jsonl", "a") as f:
                                    f.write(json.dumps({"holder": holder, "renewTime": renewed}) + "\n")
                            self.holder = holder
                            self.one_writer.lease_seen(holder, renewed)
                            self.lease_seen_at = time.time()
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.2)

    def observe(self, now: float) -> None:
        found: list[inv.Violation] = []
        # The call log: who wrote what, when.
        entries: list[dict] = []
        while True:
            page = self.aws.call("GET", f"/_sim/log?since={self.log_seq}&limit=20000")
            entries += page["entries"]
            if not page["entries"]:
                break
            self.log_seq = page["entries"][-1]["seq"]
            if len(page["entries"]) < 20000:
                break
        if entries:
            # The history, for reading a violation afterwards.
            with open(self.work / "calls.jsonl", "a") as f:
                f.writelines(json.dumps(e) + "\n" for e in entries)
        with self.lock:
            found += self.one_writer.calls(entries)
        found += self.ownership.calls(entries)
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
        states, managed_max, other_use = {}, Counter(), Counter()
        for account in (OWN, OTHER):
            st = self.aws.call("GET", "/_sim/state", account=account)
            states[account] = st
            endpoints = self.aws.call("GET", "/_sim/endpoints", account=account)["endpoints"]
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
        over = self.quota.sums(now, dict(self.quotas), managed_max, other_use)
        if over:
            # The evidence: every target and endpoint of the accounts at that moment.
            with open(self.work / f"quota-violation-{now - self.t0:.0f}s.json", "w") as f:
                json.dump({"states": states, "quotas": {f"{a}/{t}": q for (a, t), q in self.quotas.items()},
                           "types": {a: self.endpoint_types(a) for a in (OWN, OTHER)}}, f)
        found += over
        # The clocks of "within a resync" start once the first fleet converged: creating N
        # resources at once takes longer than a resync at AWS's rates (3 alarms a second).
        quiet_since = now if self.faults_on or not self.converged else max(self.last_fault_end, self.converged_at)
        # The resources, as the API server has them.
        try:
            status, listing = self.kube.call("GET", self.kube.aes_path())
        except (OSError, http.client.HTTPException):
            status, listing = 0, None
        ready, total = 0, 0
        if status == 200:
            present = {item["metadata"]["name"]: item for item in listing["items"]}
            effective, not_ready = {}, []
            for name, r in self.resources.items():
                item = present.get(name)
                if r.deleted_at is not None:
                    if item is None and not getattr(r, "endpoint_removed", False):
                        # Gone (the finalizer ran): its endpoint leaves the account too.
                        r.endpoint_removed = True
                        try:
                            self.aws.call("DELETE", f"/_sim/endpoints?endpoint={r.endpoint}", account=r.account)
                        except urllib.error.HTTPError:
                            pass
                    continue
                if item is None:
                    continue
                total += 1
                status_ = item.get("status") or {}
                effective[r.key] = status_.get("effectiveMaxCapacity")
                is_ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status_.get("conditions", [])
                )
                ready += is_ready
                if not is_ready and not r.endpoint_missing and now - r.changed_at > self.config.resync + self.config.grace:
                    not_ready.append(r.key)
            if not self.converged and ready == total == len(present):
                self.converged = True
                self.converged_at = now
                self.recovery.burst_ended(now)
                log(self.t0, f"fleet: all {total} resources Ready")
            found += self.ownership.state(now, quiet_since, list(self.resources.values()), states, effective)
            found += self.recovery.ready(now, not_ready)
            live = {
                r.key: r.changed_at for r in self.resources.values()
                if r.deleted_at is None and r.key.split("/")[1] in present
            }
            found += self.visits.check(now, quiet_since, live)
            if quiet:
                self.quiet_endpoint_seconds += len(live)
        # The controllers' logs: visits and failures.
        for replica in self.replicas.values():
            for line in replica.new_lines():
                fields = line.get("fields", {})
                message = fields.get("message", "")
                at = micro_time(line.get("timestamp")) or now
                if message == "reconciling" and fields.get("resource"):
                    self.visits.visited(fields["resource"], at)
                elif message == "reconcile failed":
                    self.reconcile_errors[fields.get("kind", "?")] += 1
        rss = [self.replicas[n].rss() for n in REPLICAS]
        for name, value in zip(REPLICAS, rss):
            r = self.replicas[name]
            if value is not None:
                self.memory.sample(r.proc.pid, name, r.started, now, value)
        self.series.append((now, ready, total, *(v / 1e6 if v else None for v in rss), len(self.faults_on)))
        for v in found:
            print(v.line(self.t0), flush=True)
        self.violations += found

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        c = self.config
        self.plan_fleet()
        log(self.t0, f"soak: {c.seconds:.0f}s, N={c.n}, SEED={c.seed}, resync {c.resync:.0f}s, "
                     f"time scale {c.time_scale:g}, work dir {self.work}")
        self.start_processes()
        self.plant_foreign_endpoints()
        threading.Thread(target=self.watch_lease, daemon=True).start()
        created = sum(self.create(p) for p in self.initial)
        log(self.t0, f"fleet: {created} resources created; quotas {dict((f'{t}@{a[-3:]}', q) for (a, t), q in self.quotas.items())}")
        self.timers: list[tuple[float, object]] = []
        self.pending_restart = None
        start = time.time()
        end = self.t0 + c.seconds
        # Warm-up: a resync for the fleet to converge before the first fault; the last two
        # resyncs are quiet, for the final recovery.
        warm = 2 * c.resync if c.compressed else 5 * c.resync
        # The last fault (a quota dip is the longest) ends three resyncs before the end.
        events = self.schedule(start + warm, end - 3 * c.resync - c.dip_seconds)
        log(self.t0, "chaos schedule: " + ", ".join(f"{e - self.t0:.0f}s {k}" for e, k in events))
        churn_every = 60.0 / max(1e-9, c.churn_per_minute * c.n)
        next_churn = start + warm
        next_traffic = start
        try:
            while time.time() < end:
                tick = time.time()
                while events and events[0][0] <= tick:
                    _, kind = events.pop(0)
                    self.guard(f"chaos {kind}", lambda kind=kind: self.inject(kind))
                for due, action in [t for t in self.timers if t[0] <= tick]:
                    self.timers.remove((due, action))
                    self.guard("chaos", action)
                if self.pending_restart:
                    which, ident, before = self.pending_restart
                    if self.count_in_log(f"{which} up") > before:
                        self.pending_restart = None
                        self.fault_end(ident)
                if tick >= next_churn and tick < end - 3 * c.resync:
                    self.guard("churn", self.churn)
                    next_churn += churn_every
                if tick >= next_traffic:
                    self.guard("traffic", lambda: self.traffic(2.0))
                    next_traffic += 2.0
                try:
                    self.observe(tick)
                    self.checks += 1
                except (OSError, http.client.HTTPException, ValueError) as e:
                    log(self.t0, f"observe: {e}")
                self.check_seconds.append(time.time() - tick)
                time.sleep(max(0.0, 1.0 - (time.time() - tick)))
            for due, action in sorted(self.timers, key=lambda t: t[0]):
                self.guard("chaos", action)
            self.self_check()
        finally:
            self.stop = True
            self.report()
            self.cleanup()
        failed = bool(self.counted_violations())
        if failed or os.environ.get("KEEP"):
            print(f"kept for reading: {self.work} (the replicas' logs, calls.jsonl, lease.jsonl)", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return 1 if failed else 0

    def guard(self, what: str, action) -> None:
        """The harness's own calls meet the faults it injects (a hung operation, an API server
        down): one that fails is logged and the soak goes on."""
        try:
            action()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            log(self.t0, f"{what}: the harness's own call failed: {e!r}")

    def self_check(self) -> None:
        """Shows that the one-writer check can fail: a write signed with the keys of the replica
        that does not hold the Lease must be reported. It is then left out of the verdict."""
        standby = next((n for n in REPLICAS if n != self.holder), REPLICAS[1])
        before = len(self.violations)
        self.aws.aws("AnyScaleFrontendService.PutScalingPolicy", {
            "ServiceNamespace": "sagemaker", "ResourceId": "endpoint/soak-self-check/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "PolicyName": "self-check",
            "PolicyType": "StepScaling"}, key=standby)
        time.sleep(1.0)
        self.observe(time.time())
        fired = [v for v in self.violations[before:] if v.invariant == inv.OneWriter.name and "self-check" in v.message]
        self.self_check_ok = bool(fired)
        for v in fired:
            self.violations.remove(v)
        log(self.t0, "self-check: the one-writer check " + (
            f"fired on a write signed with {standby}'s keys (the standby): it can fail" if fired
            else "did NOT fire on a write signed with the standby's keys: the checks are blind"))

    def counted_violations(self) -> list[inv.Violation]:
        extra = [] if getattr(self, "self_check_ok", False) else [inv.Violation("self-check", time.time(), "the one-writer check did not fire")]
        return self.violations + extra

    # ---- the report ------------------------------------------------------------------------

    def report(self) -> None:
        c = self.config
        c.out.mkdir(parents=True, exist_ok=True)
        memory_violations, memory_lines = self.memory.judge()
        self.violations += memory_violations
        names = [inv.OneWriter.name, inv.QuotaShare.name, inv.Ownership.trap1, inv.Ownership.lost,
                 inv.Ownership.left, inv.Ownership.foreign, inv.Recovery.name, inv.Visits.name,
                 inv.Memory.name]
        by_invariant = Counter(v.invariant for v in self.counted_violations())
        per_resync = (
            self.quiet_calls / (self.quiet_endpoint_seconds / c.resync)
            if self.quiet_endpoint_seconds else float("nan")
        )
        lines = [
            f"# Soak: {c.seconds:.0f} s, N={c.n}, SEED={c.seed}, resync {c.resync:.0f} s, time scale {c.time_scale:g}",
            "",
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
            f"margin {LEASE_SECONDS - LEASE_SECONDS * 2 / 3:.0f} s (the Lease's {LEASE_SECONDS:.0f} s less the renew deadline's {LEASE_SECONDS * 2 / 3:.0f} s)",
            f"- longest recovery after a burst: {self.recovery.longest:.0f} s (limit {self.recovery.limit:.0f} s; {len(self.recovery.recoveries)} bursts)",
            "- quota windows opened by the soak's own lowering: "
            + (", ".join(f"{w} {s:.0f} s" for w, s in self.quota.windows) or "none closed"),
            "- over the quota within the reaction limit after other endpoints grew (an endpoint "
            + f"re-created with an instance): {len(self.quota.reactions)} time(s), longest "
            + (f"{max(s for _, s in self.quota.reactions):.0f} s" if self.quota.reactions else "-")
            + f" (limit {self.quota.reaction_limit:.0f} s)",
            f"- AWS calls per endpoint per resync outside the bursts (churn included): {per_resync:.2f}",
            *[f"- {line}" for line in memory_lines],
            f"- reconcile failures logged, by kind: {dict(self.reconcile_errors) or 'none'}",
        ]
        total = len(self.counted_violations())
        lines += ["", f"**{total} violation(s).**"]
        text = "\n".join(lines)
        print("\n" + text, flush=True)
        (c.out / "report.md").write_text(text + "\n\n" + "\n".join(v.line(self.t0) for v in self.counted_violations()) + "\n")
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
            f"<text x='{left}' y='18' font-size='13'>asyncscale soak: resources Ready, faults, controller RSS (SEED {self.config.seed}, N {self.config.n})</text>",
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


def wait_for(path: Path, text: str, seconds: float, parse=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            for line in path.read_text().splitlines():
                if text in line:
                    return parse(line) if parse else line
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {text!r} in {path}")


def kubectl(kubeconfig: Path, *args: str) -> None:
    subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    soak = Soak(Config())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return soak.run()


if __name__ == "__main__":
    sys.exit(main())
