# asyncscale: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/debug/asyncscale

.DEFAULT_GOAL := build

.PHONY: help build demo demo-cluster bench-fleet bench-simulate soak test test-rust test-python test-lua test-soak python-deps lint crd deploy-base controlplane controlplane-replaces

# The real Kubernetes control plane of the end-to-end tests, built from source (tests/controlplane):
# kube-apiserver and etcd at the versions tests/controlplane/go.mod pins, Helm, the gopher-lua
# runner of the Argo CD health check, and Prometheus' promtool for the chart's alerts. Built once;
# `make controlplane` does nothing when they exist.
GO ?= go
CONTROLPLANE := tests/controlplane
CONTROLPLANE_BIN := $(CONTROLPLANE)/bin
KUBE_VERSION := v1.37.2
HELM_VERSION := v3.22.0
# Prometheus v3.16's Go module version (Prometheus 3 tags its module v0.3xx).
PROMETHEUS_MODULE_VERSION := v0.316.0
GO_ENV := GOTOOLCHAIN=local CGO_ENABLED=0
VERSION_PKG := k8s.io/component-base/version

## List the targets, each with the first line of what it does.
help:
	@awk '/^## / { if (!doc) doc = substr($$0, 4); next } /^$$/ { doc = "" } \
	  /^[a-z][a-z-]*:/ { split($$0, t, ":"); if (doc) printf "  %-22s %s\n", t[1], doc; doc = "" }' $(firstword $(MAKEFILE_LIST))

## Build the CLI/controller (asyncscale), the control-plane tool, debug profile.
build:
	$(CARGO) build --workspace --bins

## Build kube-apiserver, etcd, Helm, gopher-lua and promtool from their Go modules (once).
controlplane: $(CONTROLPLANE_BIN)/kube-apiserver $(CONTROLPLANE_BIN)/etcd $(CONTROLPLANE_BIN)/helm $(CONTROLPLANE_BIN)/luahealth $(CONTROLPLANE_BIN)/promtool

$(CONTROLPLANE_BIN)/kube-apiserver: $(CONTROLPLANE)/go.mod $(CONTROLPLANE)/go.sum
	cd $(CONTROLPLANE) && $(GO_ENV) $(GO) build -trimpath \
	  -ldflags "-s -w -X $(VERSION_PKG).gitVersion=$(KUBE_VERSION) -X $(VERSION_PKG).gitMajor=1 -X $(VERSION_PKG).gitMinor=37 -X $(VERSION_PKG).gitTreeState=clean" \
	  -o bin/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver

$(CONTROLPLANE_BIN)/etcd: $(CONTROLPLANE)/go.mod $(CONTROLPLANE)/go.sum
	cd $(CONTROLPLANE) && $(GO_ENV) $(GO) build -trimpath -ldflags "-s -w" -o bin/etcd go.etcd.io/etcd/server/v3

$(CONTROLPLANE_BIN)/luahealth: $(CONTROLPLANE)/go.mod $(CONTROLPLANE)/go.sum $(CONTROLPLANE)/luahealth/main.go
	cd $(CONTROLPLANE) && $(GO_ENV) $(GO) build -trimpath -o bin/luahealth ./luahealth

# Helm is kept out of the control plane's go.mod (it pins other Kubernetes libraries).
$(CONTROLPLANE_BIN)/helm:
	GOBIN=$(CURDIR)/$(CONTROLPLANE_BIN) $(GO_ENV) $(GO) install -trimpath helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# promtool, like Helm, from its own module (about 3 minutes on 2 cores the first time).
$(CONTROLPLANE_BIN)/promtool:
	GOBIN=$(CURDIR)/$(CONTROLPLANE_BIN) $(GO_ENV) $(GO) install -trimpath github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_MODULE_VERSION)

## Regenerate the replace block of tests/controlplane/go.mod from kubernetes' own go.mod.
controlplane-replaces:
	scripts/controlplane-replaces.sh $(KUBE_VERSION)

## The quick start: plan, apply, apply again (a no-op) and plan on examples/sdxl.yaml, local AWS.
## The main job on the embedded default: a local AWS endpoint with a g4dn.xlarge quota of 4,
## then plan → apply → apply again (no-op) → plan on examples/sdxl.yaml.
demo: build
	ASYNCSCALE_BIN=$(BIN) scripts/demo.sh examples/sdxl.yaml

## The controller end to end on a real kube-apiserver and etcd (built from source), simulated AWS, kubectl.
demo-cluster: build controlplane
	ASYNCSCALE_BIN=$(BIN) CONTROLPLANE_TOOL=$(TARGET_DIR)/debug/asyncscale-controlplane scripts/demo-cluster.sh

## Figures for a fleet: AWS calls per endpoint per resync, RSS, on the real control plane.
## A fleet of N resources (default 200) on the real control plane, the release controller, and the
## local AWS endpoint enforcing AWS's request rates; prints the figures docs/testing.md reports.
## RESYNC (default 60s), RESYNCS measured (default 4), FAULT_RATE (e.g. 0.3) pass through.
N ?= 200
RESYNC ?= 60s
RESYNCS ?= 4
bench-fleet: controlplane
	$(CARGO) build --release --bin asyncscale
	$(CARGO) build --bin asyncscale-controlplane
	ASYNCSCALE_RELEASE_BIN=$(TARGET_DIR)/release/asyncscale CONTROLPLANE_TOOL=$(TARGET_DIR)/debug/asyncscale-controlplane scripts/bench-fleet.sh $(N) $(RESYNC) $(RESYNCS)
	ASYNCSCALE_RELEASE_BIN=$(TARGET_DIR)/release/asyncscale scripts/bench-cli-bulk.sh $(N)

## Time and memory of `asyncscale simulate` for 1,000 endpoints over 24 simulated hours.
## `asyncscale simulate` of N endpoints (default 1000) sharing one quota for 24 simulated hours,
## through the CLI: wall time and peak RSS; then the model alone (cargo bench); fails when the CLI
## takes more than MAX_RATIO (default 4.5) times the model's time.
bench-simulate:
	$(CARGO) build --release --bin asyncscale
	ASYNCSCALE_RELEASE_BIN=$(TARGET_DIR)/release/asyncscale scripts/bench-simulate.sh $(if $(filter command line,$(origin N)),$(N),1000)

## Every test, as CI runs it (needs Go for the control plane; about 30 minutes on 2 cores).
## Every test: Rust unit, property, over-the-wire and CLI end-to-end tests, then boto3 against the
## local endpoint, the Argo CD health check and the 3-minute soak. Installs the Python test
## dependencies first when they are missing.
test: build controlplane python-deps test-rust test-python test-lua test-soak
# One after another even under -j: the soak's time limits assume the machine is its own.
.NOTPARALLEL: test

## The hour-long soak (SOAK_SECONDS, N, SEED): faults, restarts and churn, invariants every second.
## A soak (tests/soak/soak.py): the real control plane, two controller replicas with their own
## AWS keys, the local endpoint at AWS's request rates and a faster clock, N resources (default
## 300) under a random schedule of faults, restarts and churn from SEED, for SOAK_SECONDS (default
## 3600, counted once everything is up); the invariants are checked every second, and any
## violation fails it, as does a soak whose checks could not look (the fleet never Ready, the API
## server unreadable outside faults, no quiet spell). The table and an SVG chart go to target/soak.
SOAK_SECONDS ?= 3600
SEED ?= 1
SOAK_ENV = ASYNCSCALE_BIN=$(BIN) CONTROLPLANE_TOOL=$(TARGET_DIR)/debug/asyncscale-controlplane
soak: build controlplane python-deps
	$(SOAK_ENV) SOAK_SECONDS=$(SOAK_SECONDS) SEED=$(SEED) N=$(if $(filter-out file,$(origin N)),$(N),300) $(PYTHON) tests/soak/soak.py

## The 3-minute soak of `make test`.
## The short soak: 3 minutes, 20 resources, every fault kind once (SEED as above), part of
## `make test`.
test-soak: build controlplane python-deps
	$(SOAK_ENV) SOAK_SECONDS=180 N=20 SEED=$(SEED) SCHEDULE=compressed OUT=$(TARGET_DIR)/soak-short $(PYTHON) tests/soak/soak.py

## The Rust tests alone (`cargo test --workspace`; the end-to-end ones need `make controlplane`).
test-rust:
	$(CARGO) test --workspace

## boto3 and moto against the local endpoint, the policy lint, the soak's own checks (tests/python).
test-python:
	ASYNCSCALE_BIN=$(BIN) $(PYTHON) -m pytest -q tests/python

## The Argo CD health check in Argo CD's own Lua VM (gopher-lua).
test-lua: $(CONTROLPLANE_BIN)/luahealth
	$(CONTROLPLANE_BIN)/luahealth deploy/argocd/health.lua deploy/argocd/health_cases.json

## Install the Python test dependencies (boto3, moto, parliament, pytest) when missing.
python-deps:
	@$(PYTHON) -c "import boto3, moto, parliament, pytest" 2>/dev/null || $(PYTHON) -m pip install -q -r tests/python/requirements.txt

## rustfmt, clippy -D warnings, and cargo deny (licences, bans, sources).
# Advisories need GitHub, see deny.toml.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny@0.20.2
	$(CARGO) deny check licenses bans sources

## Regenerate the committed CRD after changing crates/api.
crd:
	$(CARGO) run -q -p asyncscale -- crd > crds/asyncendpointscalings.asyncscale.io.yaml
	cp crds/asyncendpointscalings.asyncscale.io.yaml deploy/base/crd.yaml
	cp crds/asyncendpointscalings.asyncscale.io.yaml deploy/helm/asyncscale/crds/

## Regenerate the kustomize base from the Helm chart (one source, two install paths).
deploy-base: $(CONTROLPLANE_BIN)/helm
	scripts/render-deploy-base.sh $(CONTROLPLANE_BIN)/helm > deploy/base/asyncscale.yaml
