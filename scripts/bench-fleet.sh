#!/usr/bin/env bash
# A fleet of N AsyncEndpointScaling resources on a real kube-apiserver and etcd, reconciled by the
# release controller against the local AWS endpoint enforcing AWS's published request rates
# (`sim serve --rate-limits aws`, plus Application Auto Scaling and SageMaker at the controller's
# assumed 10 a second per operation). Prints: kubectl apply to all Ready, AWS calls and writes per endpoint
# per resync once converged, throttles answered by the endpoint, time waited for the request
# budget, and the controller's memory.
#
#   scripts/bench-fleet.sh [N] [RESYNC] [RESYNCS_MEASURED]     (defaults: 200 60s 4)
#
# CONTROLLER_FLAGS adds flags to `asyncscale run`, e.g. to compare without the request budget:
#   CONTROLLER_FLAGS="--aws-rate cloudwatch:DescribeAlarms=0 --aws-rate cloudwatch:PutMetricAlarm=0 ..."
# FAULT_RATE=0.3 makes the endpoint answer 30 % of all requests with a passing error (its
# throttling error, 500 or 503 in turn) once every resource is Ready; the figures then say how
# many resources left Ready meanwhile and what the retries cost.
#
# After the measured resyncs, one endpoint's MaxCapacity is changed by hand (RegisterScalableTarget
# sent straight to the endpoint) and the time until the controller has repaired it is printed.
#
# Needs `make controlplane` and `cargo build --release`. Traffic stays on 127.0.0.1.
set -euo pipefail
n=${1:-200}
resync=${2:-60s}
measured=${3:-4}
bin=${ASYNCSCALE_RELEASE_BIN:-target/release/asyncscale}
controlplane=${CONTROLPLANE_TOOL:-target/debug/asyncscale-controlplane}
work=$(mktemp -d)
pids=()
fault_rate=${FAULT_RATE:-0}
# KEEP_LOGS=DIR keeps the controller's and the endpoint's logs there.
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP_LOGS:-}" ] && cp "$work"/*.log "$KEEP_LOGS"/; rm -rf "$work"' EXIT
wait_for() { for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "timed out: $1"; cat "$1"; exit 1; }
seconds() { case $1 in *m) echo $(( ${1%m} * 60 ));; *s) echo "${1%s}";; *) echo "$1";; esac; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

"$controlplane" --kubeconfig "$work/kubeconfig" 2>"$work/controlplane.log" &
pids+=($!)
for i in $(seq -w 1 "$n"); do
  cat <<EOF
---
apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {name: e$i, namespace: bench}
spec: {endpointName: bench-$i, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {targetValue: 5}}
EOF
done >"$work/fleet.yaml"
# The account's SageMaker endpoints: one per resource.
"$bin" sim serve --listen 127.0.0.1:0 --quota ml.g4dn.xlarge=100000 --endpoints-from "$work/fleet.yaml" \
  --rate-limits aws --rate-limit 'application-autoscaling:*=10/10' --rate-limit 'sagemaker:*=10/10' 2>"$work/aws.log" &
pids+=($!)
wait_for "$work/controlplane.log" "control plane ready"
wait_for "$work/aws.log" "listening on"
aws=$(grep -o 'http://[^ ]*' "$work/aws.log")
export KUBECONFIG="$work/kubeconfig" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true

kubectl apply -f crds/asyncendpointscalings.asyncscale.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/asyncendpointscalings.asyncscale.io --timeout=60s >/dev/null
kubectl create namespace bench >/dev/null

metrics_port=$(free_port)
"$bin" run --aws-endpoint "$aws" --region us-east-1 --resync "$resync" \
  --metrics-addr "127.0.0.1:$metrics_port" --log-format json ${CONTROLLER_FLAGS:-} 2>"$work/controller.log" &
controller=$!
pids+=($controller)

calls() { curl -s "$aws/_sim/calls" | python3 -c '
import json, sys
calls = json.load(sys.stdin)
ops = [(op, n) for service in calls.values() for op, n in service.items()]
writes = sum(n for op, n in ops if not op.startswith(("Describe", "List", "Get")))
print(sum(n for _, n in ops), writes)'; }
throttles() { curl -s "$aws/_sim/throttles" | python3 -c '
import json, sys
print(sum(n for service in json.load(sys.stdin).values() for n in service.values()))'; }

start=$(now)
kubectl apply -f "$work/fleet.yaml" >/dev/null
applied=$(python3 -c "print(f'{$(now) - $start:.1f}')")
# TIMELINE=FILE records, every 10 s until Ready: seconds since apply, alarms written, Ready count.
if [ -n "${TIMELINE:-}" ]; then
  (while true; do
    alarms=$(curl -s "$aws/_sim/calls" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("cloudwatch", {}).get("PutMetricAlarm", 0))')
    ready_now=$(kubectl get aes -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
    echo "$(python3 -c "print(f'{$(now) - $start:.0f}')") $alarms $ready_now" >>"$TIMELINE"
    sleep 10
  done) &
  pids+=($!)
fi
# Polled rather than `kubectl wait --all`, which checks one object after another and at 1,000
# objects adds over a minute of its own.
all_ready() { [ "$(kubectl get aes -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)" -eq "$n" ]; }
until all_ready; do
  sleep 1
  python3 -c "import sys; sys.exit($(now) - $start > 1800)" || { echo "not all Ready after 1800 s"; exit 1; }
done
ready=$(now)
failures=$(python3 -c '
import collections, json, re, sys
counts = collections.Counter()
for line in open(sys.argv[1]):
    if "reconcile failed" in line:
        error = json.loads(line)["fields"].get("error", "")
        counts[re.sub(r"[0-9]+", "N", error)[:140]] += 1
print("; ".join(f"{n}x {e}" for e, n in counts.most_common(3)) or "none")' "$work/controller.log")
writes_by_operation=$(curl -s "$aws/_sim/calls" | python3 -c '
import json, sys
ops = {op: n for service in json.load(sys.stdin).values() for op, n in service.items()}
print(", ".join(f"{op} {n}" for op, n in sorted(ops.items()) if not op.startswith(("Describe", "List", "Get"))))')
budget_waits=$(curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^asyncscale_aws_budget_wait_seconds_total/ {print $2, $1}' | sort -rn | head -3 | sed 's/asyncscale_aws_budget_wait_seconds_total//' | tr '\n' ' ')
read -r calls_ready writes_ready <<<"$(calls)"
throttled_ready=$(throttles)

not_ready_now() { kubectl get aes -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -vc '^True$' || true; }
if [ "$fault_rate" != 0 ]; then
  curl -s -X POST "$aws/_sim/fault-rate" -d "{\"rate\": $fault_rate}" >/dev/null
fi

# Converged: count what whole resyncs cost, and watch Ready meanwhile.
most_not_ready=0
until_measured=$(( $(date +%s) + $(seconds "$resync") * measured ))
while [ "$(date +%s)" -lt "$until_measured" ]; do
  count=$(not_ready_now)
  [ "$count" -gt "$most_not_ready" ] && most_not_ready=$count
  sleep 5
done
read -r calls_after writes_after <<<"$(calls)"
throttled_after=$(throttles)
injected=$(curl -s "$aws/_sim/injected" | python3 -c '
import json, sys
print(sum(n for service in json.load(sys.stdin).values() for n in service.values()))')
if [ "$fault_rate" != 0 ]; then
  curl -s -X POST "$aws/_sim/fault-rate" -d '{"rate": 0}' >/dev/null
fi

# Drift by hand on one endpoint: MaxCapacity 4 → 1, sent straight to the endpoint.
drift_id="endpoint/bench-$(printf "%0${#n}d" 1)/variant/AllTraffic"
max_of() { curl -s "$aws/_sim/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
print(next((t["MaxCapacity"] for t in state["ScalableTargets"] if t["ResourceId"] == sys.argv[1]), -1))' "$drift_id"; }
curl -s -X POST "$aws/" -H 'Content-Type: application/x-amz-json-1.1' \
  -H 'X-Amz-Target: AnyScaleFrontendService.RegisterScalableTarget' \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=bench/20261128/us-east-1/application-autoscaling/aws4_request' \
  -d "{\"ServiceNamespace\": \"sagemaker\", \"ResourceId\": \"$drift_id\", \"ScalableDimension\": \"sagemaker:variant:DesiredInstanceCount\", \"MaxCapacity\": 1}" >/dev/null
drifted=$(now)
[ "$(max_of)" = 1 ] || { echo "the drift by hand did not take"; exit 1; }
repaired=""
for _ in $(seq $(( $(seconds "$resync") * 30 ))); do
  if [ "$(max_of)" = 4 ]; then repaired=$(now); break; fi
  sleep 0.1
done
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$controller/status")
waited=$(curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^asyncscale_aws_budget_wait_seconds_total/ {s += $2} END {printf "%.1f", s}')
not_ready=$(kubectl get aes -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -vc '^True$' || true)

python3 - "$n" "$resync" "$measured" "$start" "$ready" "$calls_ready" "$writes_ready" "$throttled_ready" \
  "$calls_after" "$writes_after" "$throttled_after" "$rss_kib" "$waited" "$not_ready" \
  "$fault_rate" "$injected" "$most_not_ready" "$drifted" "${repaired:-0}" "$writes_by_operation" "$budget_waits" "$applied" "$failures" <<'EOF'
import sys
n, resync, measured = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
start, ready = float(sys.argv[4]), float(sys.argv[5])
calls_ready, writes_ready, throttled_ready = map(int, sys.argv[6:9])
calls_after, writes_after, throttled_after = map(int, sys.argv[9:12])
rss_kib, waited, not_ready = int(sys.argv[12]), float(sys.argv[13]), int(sys.argv[14])
fault_rate, injected, most_not_ready = float(sys.argv[15]), int(sys.argv[16]), int(sys.argv[17])
drifted, repaired = float(sys.argv[18]), float(sys.argv[19])
bound = n / 3.0  # one PutMetricAlarm per endpoint at CloudWatch's 3 a second
print(f"resources: {n}, resync {resync}, AWS rates: CloudWatch and Service Quotas as published, Application Auto Scaling 10/s per operation")
print(f"kubectl apply to all Ready: {ready - start:.1f} s (PutMetricAlarm at 3/s alone needs {bound:.1f} s: {((ready - start) / bound):.2f}x)")
print(f"AWS calls until Ready: {calls_ready} ({calls_ready / n:.1f} per endpoint), writes {writes_ready} ({writes_ready / n:.1f} per endpoint)")
per = (calls_after - calls_ready) / (n * measured)
faults = f" with {fault_rate:.0%} of requests failing ({injected} injected)" if fault_rate else ""
print(f"converged, {measured} resyncs{faults}: {calls_after - calls_ready} calls = {per:.3f} per endpoint per resync, {writes_after - writes_ready} writes")
print(f"most resources not Ready at once meanwhile (sampled every 5 s): {most_not_ready}")
print(f"drift by hand on one endpoint repaired after: {repaired - drifted:.1f} s" if repaired else "drift by hand on one endpoint: NOT repaired")
print(f"throttled by the endpoint: {throttled_ready} until Ready, {throttled_after - throttled_ready} after")
print(f"time waited for the request budget: {waited} s in all")
print(f"resources not Ready at the end: {not_ready}")
print(f"writes until Ready by operation: {sys.argv[20]}")
print(f"longest budget waits until Ready (s): {sys.argv[21]}")
print(f"kubectl apply itself took: {sys.argv[22]} s")
print(f"failed reconciles until Ready, by error: {sys.argv[23]}")
print(f"controller RSS: {rss_kib / 1024:.1f} MiB")
EOF
