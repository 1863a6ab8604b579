#!/usr/bin/env bash
# `asyncscale simulate` of a fleet through the CLI, as a user runs it: N endpoints of one
# instance type sharing one quota (quota.policy Share, the default; quota 3 instances per endpoint), 2 requests a
# minute each for 24 simulated hours, JSON output. Prints the wall time, the peak RSS and what
# the fleet did.
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
python3 - "$bin" "$work/fleet.yaml" "$n" <<'PY'
import json, resource, subprocess, sys, time
bin, fleet, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
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
PY
