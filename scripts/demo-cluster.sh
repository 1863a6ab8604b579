#!/usr/bin/env bash
# The controller as a cluster user meets it, on a machine without a cluster: a real kube-apiserver
# and etcd (built from source by `make controlplane`, started by asyncscale-controlplane), a
# simulated AWS account (quota 4 for ml.g4dn.xlarge), `asyncscale run`, and the real kubectl,
# following the README's steps.
set -euo pipefail
bin=${ASYNCSCALE_BIN:-target/debug/asyncscale}
controlplane=${CONTROLPLANE_TOOL:-target/debug/asyncscale-controlplane}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
wait_for() { for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "timed out: $1"; cat "$1"; exit 1; }

"$controlplane" --kubeconfig "$work/kubeconfig" 2>"$work/controlplane.log" &
pids+=($!)
"$bin" sim serve --listen 127.0.0.1:0 --quota ml.g4dn.xlarge=4 --endpoints-from examples/sdxl.yaml 2>"$work/aws.log" &
pids+=($!)
wait_for "$work/controlplane.log" "control plane ready"
wait_for "$work/aws.log" "listening on"
aws=$(grep -o 'http://[^ ]*' "$work/aws.log")
export KUBECONFIG="$work/kubeconfig" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true

run() { echo; echo "\$ $*"; "$@"; }
run kubectl apply -f crds/asyncendpointscalings.asyncscale.io.yaml
run kubectl wait --for=condition=Established crd/asyncendpointscalings.asyncscale.io --timeout=30s
"$bin" run --aws-endpoint "$aws" --region us-east-1 --metrics-addr 127.0.0.1:0 2>"$work/controller.log" &
pids+=($!)
run kubectl create namespace ml
run kubectl apply -f examples/sdxl.yaml
run kubectl wait --for=condition=Ready aes/sdxl -n ml --timeout=60s
run kubectl get aes -A
run kubectl get aes sdxl -n ml -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
run kubectl events -n ml --for aes/sdxl
run kubectl delete aes sdxl -n ml
echo; echo "AWS after delete: $(curl -s "$aws/_sim/state")"
