# asyncscale: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/debug/asyncscale

.PHONY: build demo demo-cluster test test-rust test-python test-lua python-deps lint crd

build:
	$(CARGO) build --workspace --bins

## The main job on the embedded default: a local AWS endpoint with a g4dn.xlarge quota of 4,
## then plan → apply → apply again (no-op) → plan on examples/sdxl.yaml.
demo: build
	ASYNCSCALE_BIN=$(BIN) scripts/demo.sh examples/sdxl.yaml

## The controller end to end without a cluster: Kubernetes API emulator, simulated AWS, kubectl.
demo-cluster: build
	ASYNCSCALE_BIN=$(BIN) KUBE_EMULATOR_BIN=$(TARGET_DIR)/debug/kube-emulator scripts/demo-cluster.sh

## Every test: Rust unit, property, over-the-wire and CLI end-to-end tests, then boto3 against the
## local endpoint. Installs the Python test dependencies first when they are missing.
test: build python-deps test-rust test-python test-lua

test-rust:
	$(CARGO) test --workspace

test-python:
	ASYNCSCALE_BIN=$(BIN) $(PYTHON) -m pytest -q tests/python

## The Argo CD health check, run by a real Lua interpreter (Debian: apt-get install lua5.4).
test-lua:
	@command -v lua5.4 >/dev/null || command -v lua >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.4 >/dev/null; } || \
	  { echo "make test-lua needs a Lua interpreter: apt-get install lua5.4"; exit 1; }
	$$(command -v lua5.4 || command -v lua) deploy/argocd/health_test.lua

python-deps:
	@$(PYTHON) -c "import boto3, moto, pytest" 2>/dev/null || $(PYTHON) -m pip install -q -r tests/python/requirements.txt

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Regenerate the committed CRD after changing crates/api.
crd:
	$(CARGO) run -q -p asyncscale -- crd > crds/asyncendpointscalings.asyncscale.io.yaml
	cp crds/asyncendpointscalings.asyncscale.io.yaml deploy/base/crd.yaml
	cp crds/asyncendpointscalings.asyncscale.io.yaml deploy/helm/asyncscale/crds/
