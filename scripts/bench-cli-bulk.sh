#!/usr/bin/env bash
# What a no-op `asyncscale apply` of N resources costs in AWS calls, read in bulk (the default from
# 10 resources) and per resource (--bulk-from above N), against the local AWS endpoint.
#
#   scripts/bench-cli-bulk.sh [N]     (default 1000)
#
# The first apply creates everything with the request budget lifted (the endpoint enforces no
# rate here); only the calls of the no-op applies are compared. Traffic stays on 127.0.0.1.
set -euo pipefail
n=${1:-1000}
bin=${ASYNCSCALE_RELEASE_BIN:-target/release/asyncscale}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq -w 1 "$n"); do
  printf -- '---\napiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {name: e%s, namespace: bench}\nspec: {endpointName: bench-%s, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {targetValue: 5}}\n' "$i" "$i"
done >"$work/fleet.yaml"
"$bin" sim serve --listen 127.0.0.1:0 --quota ml.g4dn.xlarge=100000 --endpoints-from "$work/fleet.yaml" 2>"$work/aws.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/aws.log" && break; sleep 0.1; done
aws=$(grep -o 'http://[^ ]*' "$work/aws.log")
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
# The bulk runs' endpoint descriptions are kept here, not in the user's cache.
export XDG_CACHE_HOME="$work/cache"
# An operation's own rate wins over its service's `*`: lift those one by one.
unlimited=(--aws-rate 'application-autoscaling:*=0' --aws-rate 'cloudwatch:*=0' --aws-rate 'cloudwatch:PutMetricAlarm=0'
  --aws-rate 'cloudwatch:DescribeAlarms=0' --aws-rate 'service-quotas:*=0' --aws-rate 'service-quotas:GetServiceQuota=0'
  --aws-rate 'service-quotas:ListServiceQuotas=0' --aws-rate 'sagemaker:*=0')
apply() { "$bin" apply -f "$work/fleet.yaml" --aws-endpoint "$aws" --region us-east-1 "$@" 2>&1 >/dev/null | grep '^AWS calls'; }
echo "first apply (creates $n): $(apply "${unlimited[@]}")"
start=$(date +%s.%N)
bulk=$(apply)
bulk_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
start=$(date +%s.%N)
uncached=$(apply --no-cache)
uncached_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
start=$(date +%s.%N)
single=$(apply --bulk-from $((n + 1)) "${unlimited[@]}")
single_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
per() { python3 -c "import sys, re; c = int(re.search(r'AWS calls: (\d+)', sys.argv[1]).group(1)); print(f'{c / $n:.3f}')" "$1"; }
echo "no-op apply, in bulk (AWS's rates): $bulk = $(per "$bulk") per resource, ${bulk_s} s"
echo "no-op apply, in bulk without the endpoint cache (AWS's rates): $uncached = $(per "$uncached") per resource, ${uncached_s} s"
echo "no-op apply, per resource (budget lifted): $single = $(per "$single") per resource, ${single_s} s"
