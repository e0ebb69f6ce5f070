# The project's entry points. `make test` is what CI runs (through .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# Caches live outside the checkout so clean clones (CI) reuse them when present.
CACHE_DIR ?= $(or $(IMAGE_AUTOMATION_CACHE),$(HOME)/.cache/image-automation-rs)
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
CARGO ?= cargo

.PHONY: help setup build lint test generate demo e2e bench fuzz images

help:
	@echo "make setup     install what a fresh Debian machine lacks (packages, kube-apiserver build)"
	@echo "make build     build the workspace"
	@echo "make lint      rustfmt check and clippy -D warnings"
	@echo "make test      setup + lint + images + every test (what CI runs)"
	@echo "make generate  regenerate CRDs and docs/api.md from crates/api-types"
	@echo "make demo      local registry + git repo + both services, end to end"
	@echo "make e2e       the end-to-end suite on the testbed"
	@echo "make bench     benchmarks, with ratios against baselines measured in the same run"
	@echo "make fuzz      coverage-guided fuzzing, FUZZ_SECONDS (default 60) per target"
	@echo "make images    both controller images, tagged as the charts' defaults (project Docker engine)"
	@echo "make e2e-cluster  the seed procedure with both controllers as Pods on a real node (root)"

setup:
	bash e2e/setup.sh

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# `images` first: e2e/tests/images.rs runs both images under the charts' securityContext.
test: setup lint images
	$(CARGO) test --workspace --locked

generate:
	$(CARGO) run --quiet --locked -p crdgen -- .

# Only the demo's layer of the set-up: a few packages, no kube-apiserver, no Docker engine.
demo:
	bash e2e/setup.sh --demo
	bash e2e/demo.sh

# The tests run the controllers' binaries from the target directory: build them first.
e2e: setup
	$(CARGO) build --locked -p image-reflector -p image-automation --bins
	$(CARGO) test --locked -p e2e

# Each bench measures its baseline in the same run and prints the ratio; a bench whose goal
# is a ratio exits non-zero when the goal is missed. Figures go to docs/benchmarks.md.
bench: setup
	$(CARGO) bench --locked -p image-reflector --bench policy --bench registry --bench store
	$(CARGO) bench --locked -p image-automation --bench update --bench render
	$(CARGO) bench --locked -p image-reflector --bench scale
	$(CARGO) bench --locked -p image-automation --bench git
	$(CARGO) bench --locked -p image-automation --bench scale

# Coverage-guided fuzzing with libFuzzer through cargo fuzz, on the stable toolchain
# (`--sanitizer none` needs no nightly flags; the code has no unsafe for ASan to check).
# Each target of crates/fuzz-targets runs FUZZ_SECONDS from its checked-in seed corpus;
# new interesting inputs go to fuzz/scratch/<target> (not the checked-in corpus: copy the
# ones worth keeping, and every crash, into crates/fuzz-targets/corpus/<target>), crashes
# to fuzz/artifacts/<target>. `make test` replays the checked-in corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= setters_rewrite semver_range go_template image_reference registry_link \
	registry_json dockerconfigjson api_selector api_request
FUZZ_TARGET_DIR ?= $(CACHE_DIR)/fuzz-target
FUZZ_FLAGS ?= -rss_limit_mb=1024 -timeout=10

fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p scratch/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) fuzz run --sanitizer none $$t \
			scratch/$$t ../crates/fuzz-targets/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) || exit 1; \
	done

# --- Container images (issue 13) ---------------------------------------------------------------
# Both controller images from docker/*.Dockerfile on the project's own Docker engine
# (e2e/docker-engine.sh), from base images made locally (e2e/images.sh base), tagged
# <values image.repository>:<Chart appVersion>. Point DOCKER_HOST at the engine to use them:
#   eval "$$(bash e2e/docker-engine.sh print-env)"
images: setup
	bash e2e/images.sh build

# --- A real node (issue 13): e2e/cluster.sh starts a single-node Kubernetes in a network
# namespace; the test installs both charts with our images (`make images`, in the project's
# Docker engine: DOCKER_HOST from setup.sh --print-env) and runs the seed procedure and the
# Pod faults. Not part of `make test` (see docs/benchmarks.md for its times).
.PHONY: e2e-cluster
e2e-cluster: images
	bash e2e/setup.sh --cluster
	eval "$$(bash e2e/setup.sh --print-env)" && \
		$(CARGO) test --locked -p e2e --test cluster -- --ignored --nocapture
