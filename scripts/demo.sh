#!/usr/bin/env bash
# Runs asyncscale against its local AWS endpoint: an account whose ml.g4dn.xlarge quota is 4.
set -euo pipefail
manifest=${1:-examples/sdxl.yaml}
bin=${ASYNCSCALE_BIN:-target/debug/asyncscale}

log=$(mktemp)
"$bin" sim serve --listen 127.0.0.1:0 --quota ml.g4dn.xlarge=4 --endpoints-from "$manifest" 2>"$log" &
sim=$!
trap 'kill $sim 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done
endpoint=$(grep -o 'http://[^ ]*' "$log")

# The local endpoint does not check signatures, but the AWS SDK needs some credentials to sign with.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
run() {
  echo
  echo "\$ asyncscale $* -f $manifest"
  "$bin" "$@" -f "$manifest" --aws-endpoint "$endpoint" || echo "(exit code $?)"
}

echo "Local AWS endpoint at $endpoint (quota 'ml.g4dn.xlarge for endpoint usage' = 4)"
run plan
run apply
run apply
run plan
