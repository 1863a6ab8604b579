#!/usr/bin/env bash
# The controller as a cluster user meets it, on a machine without a cluster: the project's
# Kubernetes API emulator, a simulated AWS account (quota 4 for ml.g4dn.xlarge), `asyncscale run`,
# and the real kubectl.
set -euo pipefail
bin=${ASYNCSCALE_BIN:-target/debug/asyncscale}
emulator=${KUBE_EMULATOR_BIN:-target/debug/kube-emulator}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "timed out: $1"; exit 1; }

"$emulator" --listen 127.0.0.1:0 --crd crds/asyncendpointscalings.asyncscale.io.yaml --kubeconfig "$work/kubeconfig" 2>"$work/emulator.log" &
pids+=($!)
"$bin" sim serve --listen 127.0.0.1:0 --quota ml.g4dn.xlarge=4 2>"$work/aws.log" &
pids+=($!)
wait_for "$work/emulator.log" "listening on"
wait_for "$work/aws.log" "listening on"
aws=$(grep -o 'http://[^ ]*' "$work/aws.log")
export KUBECONFIG="$work/kubeconfig" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
"$bin" run --aws-endpoint "$aws" --region us-east-1 --metrics-addr 127.0.0.1:0 2>"$work/controller.log" &
pids+=($!)

run() { echo; echo "\$ $*"; "$@"; }
run kubectl apply -f examples/sdxl.yaml
run kubectl wait --for=condition=Ready aes/sdxl -n ml --timeout=30s
run kubectl get aes -A
run kubectl get aes sdxl -n ml -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
run kubectl delete aes sdxl -n ml
echo; echo "AWS after delete: $(curl -s "$aws/_sim/state")"
