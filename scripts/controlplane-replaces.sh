#!/usr/bin/env bash
# Rewrites the replace block of tests/controlplane/go.mod from kubernetes' own go.mod: every
# `k8s.io/X => ./staging/src/k8s.io/X` there becomes `k8s.io/X => k8s.io/X v0.<minor>.<patch>` here
# (kubernetes requires its staging modules at v0.0.0, which only build as published releases).
set -euo pipefail
version=${1:?usage: controlplane-replaces.sh v1.MINOR.PATCH}
staging=v0${version#v1}
cd "$(dirname "$0")/../tests/controlplane"
gomod=$(GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
modules=$(sed -n 's|^\s*\(k8s.io/[^ ]*\) => ./staging/src/.*|\1|p' "$gomod" | sort -u)
[ -n "$modules" ] || { echo "no staging replaces found in $gomod" >&2; exit 1; }
{
  sed '/^replace (/,$d' go.mod
  echo "replace ("
  for m in $modules; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
  echo ")"
} > go.mod.new
mv go.mod.new go.mod
GOTOOLCHAIN=local go mod tidy
echo "$(echo "$modules" | wc -l) staging modules replaced with $staging"
