# The project's entry points. `make test` is what CI runs (through .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# Caches live outside the checkout so clean clones (CI) reuse them when present.
CACHE_DIR ?= $(or $(IMAGE_AUTOMATION_CACHE),$(HOME)/.cache/image-automation-rs)
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
CARGO ?= cargo

.PHONY: help setup build lint test generate demo e2e bench

help:
	@echo "make setup     install what a fresh Debian machine lacks (packages, kube-apiserver build)"
	@echo "make build     build the workspace"
	@echo "make lint      rustfmt check and clippy -D warnings"
	@echo "make test      setup + lint + every test (what CI runs)"
	@echo "make generate  regenerate CRDs and docs/api.md from crates/api-types"
	@echo "make demo      local registry + git repo + both services, end to end"
	@echo "make e2e       the end-to-end suite on the testbed"
	@echo "make bench     benchmarks, with ratios against baselines measured in the same run"

setup:
	bash e2e/setup.sh

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test: setup lint
	$(CARGO) test --workspace --locked

generate:
	$(CARGO) run --quiet --locked -p crdgen -- .

demo: setup
	bash e2e/demo.sh

# The tests run the controllers' binaries from the target directory: build them first.
e2e: setup
	$(CARGO) build --locked -p image-reflector -p image-automation --bins
	$(CARGO) test --locked -p e2e

# Each bench measures its baseline in the same run and prints the ratio; a bench whose goal
# is a ratio exits non-zero when the goal is missed. Figures go to docs/benchmarks.md.
bench: setup
	$(CARGO) bench --locked -p image-reflector --bench policy --bench registry --bench store
	$(CARGO) bench --locked -p image-automation --bench update
	$(CARGO) bench --locked -p go-template --bench render
	$(CARGO) bench --locked -p image-reflector --bench scale
	$(CARGO) bench --locked -p image-automation --bench git
