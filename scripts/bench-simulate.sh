#!/usr/bin/env bash
# `asyncscale simulate` of a fleet through the CLI, as a user runs it: N endpoints of one
# instance type sharing one quota (quota.policy Share, the default; quota 3 instances per endpoint), 2 requests a
# minute each for 24 simulated hours, JSON output. Prints the wall time, the peak RSS and what
# the fleet did. Then the scaling model alone on 1,000 endpoints (`cargo bench -p asyncscale-sim
# --bench simulation`, in the same run on the same machine), and the ratio of the two: what the
# CLI adds to the model (the setup over the in-process wire, the quota share at each resync, the
# JSON). A ratio above MAX_RATIO (default 4.5) fails: the CLI path has slowed, not the machine.
#
#   scripts/bench-simulate.sh [N]     (default 1000; needs `cargo build --release`)
set -euo pipefail
n=${1:-1000}
bin=${ASYNCSCALE_RELEASE_BIN:-target/release/asyncscale}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq -w 1 "$n"); do
  cat <<MANIFEST
---
apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {name: e$i, namespace: bench}
spec: {endpointName: e$i, instanceType: ml.g4dn.xlarge, minCapacity: 0, maxCapacity: 4, targetTracking: {targetValue: 5}}
MANIFEST
done >"$work/fleet.yaml"
cargo bench -q -p asyncscale-sim --bench simulation >"$work/model.txt"
python3 - "$bin" "$work/fleet.yaml" "$n" "$work/model.txt" "${MAX_RATIO:-4.5}" <<'PY'
import json, re, resource, subprocess, sys, time
bin, fleet, n, model, max_ratio = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
cmd = [bin, "simulate", "-f", fleet, "--load", "rate:2/m@0m-24h", "--duration", "24h",
       "--quota", f"ml.g4dn.xlarge={3 * n}", "-o", "json"]
start = time.monotonic()
out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
took = time.monotonic() - start
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
endpoints = json.loads(out)["endpoints"]
print(f"{n} endpoints, 24 h simulated, quota shared: {took:.1f} s, peak RSS {peak_mib:.0f} MiB")
print(f"failed scaling activities: {sum(e['failed_activity_count'] for e in endpoints)}; "
      f"requests processed: {sum(e['requests_processed'] for e in endpoints):.0f} of "
      f"{sum(e['requests_arrived'] for e in endpoints):.0f}; "
      f"instance-minutes: {sum(e['instance_minutes'] for e in endpoints):.0f}")
# The model alone, 1,000 endpoints for 24 h: configuring them and running the day.
line = next(l for l in open(model) if l.strip().startswith("1000 endpoint"))
run_s = float(re.search(r"([0-9.]+) s to run", line).group(1))
setup_s = float(re.search(r"([0-9.]+) s to configure", line).group(1))
model_s = run_s + setup_s
ratio = took * 1000 / n / model_s
print(f"the model alone, 1000 endpoints, 24 h: {model_s:.2f} s; the CLI per 1,000 endpoints takes "
      f"{ratio:.1f} times that (at most {max_ratio:g})")
if ratio > max_ratio:
    sys.exit(f"bench-simulate: the CLI takes {ratio:.1f} times the model's time, above {max_ratio:g}: "
             "the CLI's path (setup over the wire, the quota share, the output) has slowed")
PY
