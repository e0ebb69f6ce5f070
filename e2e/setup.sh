#!/usr/bin/env bash
# e2e/setup.sh: install every external component the integration tests use.
#
# Target: Debian bookworm, run as root, no Docker, network limited to Debian's
# package archive (plus the language registries). Idempotent: run it as often as
# you like; it only installs what is missing.
#
#   bash e2e/setup.sh              install what is missing, build kube-apiserver if not cached
#   bash e2e/setup.sh --check      exit 0 if everything is present, else 1 and list what is missing
#   bash e2e/setup.sh --print-env  print `export NAME=path` lines for the test harness:
#                                  eval "$(bash e2e/setup.sh --print-env)"
#   bash e2e/setup.sh --demo       only what `make demo` needs (a few packages; no kube-apiserver
#                                  build, no Helm venv, no Docker engine)
#   bash e2e/setup.sh --cluster    everything above plus the real node of `make e2e-cluster`
#                                  (kubelet, controller-manager, scheduler, kube-proxy, pause;
#                                  CNI and conntrack packages); --check-cluster checks it
#
# Docker engine: Debian's docker.io, started as the project's own dockerd by
# e2e/docker-engine.sh (own data root and socket under the cache, no host networking changes);
# --print-env prints DOCKER and DOCKER_HOST. `make images` (e2e/images.sh) builds on it.
#
# kube-apiserver: no prebuilt binary can be downloaded here, so it is built from
# Debian's `kubernetes` source package (v1.20.2, the one kubernetes-client comes
# from), with the vendored modern-go/reflect2 replaced by Debian's v1.0.2 (v1.0.1
# crashes under Go >= 1.18). Only the final binary is kept, in
#   ${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}/kube-apiserver-v1.20.2/kube-apiserver
# outside the checkout; the first run on a machine pays for the build (~5-9 min on
# 2 cores), later runs reuse it. See shared/notes/real-kube-apiserver.md.
#
# helm-sdkpy (PyPI; Helm's own Go library for linux-amd64, wrapped for Python) renders and
# installs the charts in tests: it goes into a venv in the cache,
#   ${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}/helm-venv
# (--print-env prints HELM_PYTHON=<venv>/bin/python). It declares Python >= 3.12 but works
# on Debian's 3.11, hence --ignore-requires-python.
#
# Environment:
#   IMAGE_AUTOMATION_CACHE   cache directory (default $HOME/.cache/image-automation-rs)
#   SETUP_BUILD_TIMEOUT      seconds allowed for the kube-apiserver build (default 3600)

set -euo pipefail

# --------------------------------------------------------------------------
# Debian packages (bookworm). Installed only when missing.
# --------------------------------------------------------------------------
PACKAGES=(
  golang-go                            # Go 1.19: builds kube-apiserver; runs the Go semver/sprig oracle
  make                                 # kube-apiserver build (Kubernetes' Makefile)
  rsync                                # kube-apiserver build (hack/ scripts copy with rsync)
  golang-github-modern-go-reflect2-dev # reflect2 v1.0.2, replaces the vendored v1.0.1 that crashes under Go >= 1.18
  etcd-server                          # etcd 3.4: kube-apiserver's storage
  docker-registry                      # CNCF distribution 2.8: real OCI/Docker registry for image scanning tests
  apache2-utils                        # htpasswd -B (bcrypt) for docker-registry and lighttpd basic auth
  git                                  # git CLI and git-http-backend (smart HTTP CGI)
  lighttpd                             # CGI-capable HTTP server in front of git-http-backend (mod_cgi, mod_auth)
  lighttpd-mod-openssl                 # HTTPS for the git server (image tests: clone/push with the testbed CA)
  openssh-server                       # sshd for SSH git remotes with deploy keys
  openssh-client                       # ssh / ssh-keygen for SSH git remotes
  gnupg                                # gpg + gpg-agent: test OpenPGP keys and `git verify-commit` of signed commits
  prometheus                           # Prometheus 2.42: scrapes the controllers' /metrics
  golang-github-masterminds-semver-dev # Masterminds/semver v3 (Flux's semver ranges): Go differential oracle
  golang-github-masterminds-sprig-dev  # Masterminds/sprig v3 (Flux's commit templates): Go differential oracle
  openssl                              # TLS certificates for kube-apiserver, registry, etc.
  curl                                 # readiness probes and plain HTTP calls (registry API)
  ca-certificates                      # TLS trust store for curl/apt
)
KUBECTL_PACKAGE=kubernetes-client      # kubectl 1.20; installed only when no `kubectl` is on PATH

# --- Container engine (issue 13): the project's own dockerd and locally made base images.
ENGINE_PACKAGES=(
  docker.io                            # dockerd 20.10 + containerd + runc (e2e/docker-engine.sh)
  debootstrap                          # minbase bookworm root file system for the base images (e2e/images.sh)
)
DOCKER_ENGINE="$(dirname "${BASH_SOURCE[0]}")/docker-engine.sh"

# --- `make demo` layer: only what e2e/demo.sh runs (plus the Rust toolchain it builds with).
DEMO_PACKAGES=(docker-registry git curl ca-certificates)
# full (default) or demo (--demo): which layer do_install and the probes cover.
LAYER=full

# Source package kube-apiserver is built from, and the version it yields.
KUBE_SRC_PACKAGE=kubernetes
KUBE_VERSION=v1.20.2

CACHE="${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}"
KUBE_DIR="$CACHE/kube-apiserver-$KUBE_VERSION"
KUBE_APISERVER_BIN="$KUBE_DIR/kube-apiserver"
DEB_SRC_FILE=/etc/apt/sources.list.d/image-automation-rs-src.sources
BUILD_TIMEOUT="${SETUP_BUILD_TIMEOUT:-3600}"

# Real Helm for the chart tests (e2e/helm/render.py): helm-sdkpy in a venv.
HELM_VENV="$CACHE/helm-venv"
HELM_PYTHON_BIN="$HELM_VENV/bin/python"
HELM_SDKPY_VERSION=0.1.32
CFFI_VERSION=2.1.1

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -o DPkg::Lock::Timeout=600)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Cleanup of whatever this run created temporarily (policy-rc.d, deb-src entry, build dir).
# --------------------------------------------------------------------------
CREATED_POLICY_RC=0
CREATED_DEB_SRC=0
BUILD_TMP=""
cleanup() {
  local rc=$?
  if [[ $CREATED_POLICY_RC == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  if [[ $CREATED_DEB_SRC == 1 ]]; then rm -f "$DEB_SRC_FILE"; fi
  if [[ -n $BUILD_TMP && -d $BUILD_TMP ]]; then
    chmod -R u+w "$BUILD_TMP" 2>/dev/null || true
    rm -rf "$BUILD_TMP"
  fi
  return $rc
}
# A long step runs in the background so that a signal reaches this script at
# once (bash defers traps until a foreground child ends); the trap then stops
# the step (timeout passes the signal on to the step's whole process group).
CHILD_PID=""
on_signal() {
  if [[ -n $CHILD_PID ]]; then
    kill -TERM "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
  log "interrupted"
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# --------------------------------------------------------------------------
# Probes (no side effects).
# --------------------------------------------------------------------------
pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# Packages that should be present but are not.
missing_packages() {
  local p wanted=()
  if [[ $LAYER == demo ]]; then wanted=("${DEMO_PACKAGES[@]}"); else wanted=("${PACKAGES[@]}" "${ENGINE_PACKAGES[@]}"); fi
  for p in "${wanted[@]}"; do
    pkg_installed "$p" || echo "$p"
  done
  [[ $LAYER != demo ]] || return 0
  if ! command -v kubectl >/dev/null 2>&1 && ! pkg_installed "$KUBECTL_PACKAGE"; then
    echo "$KUBECTL_PACKAGE"
  fi
}

kube_apiserver_ok() {
  [[ -x $KUBE_APISERVER_BIN ]] || return 1
  local out
  out="$(timeout 30 "$KUBE_APISERVER_BIN" --version 2>/dev/null)" || return 1
  [[ $out == "Kubernetes ${KUBE_VERSION%.*}."* ]]
}

git_http_backend_path() {
  local exec_path
  exec_path="$(git --exec-path 2>/dev/null)" || return 1
  [[ -x $exec_path/git-http-backend ]] || return 1
  echo "$exec_path/git-http-backend"
}

# NAME=path pairs for --print-env; one per line, path empty when not found.
env_entries() {
  local p
  echo "KUBE_APISERVER=$( [[ -x $KUBE_APISERVER_BIN ]] && echo "$KUBE_APISERVER_BIN" )"
  echo "ETCD=$(command -v etcd || true)"
  echo "DOCKER_REGISTRY=$(command -v docker-registry || true)"
  echo "PROMETHEUS=$(command -v prometheus || true)"
  echo "KUBECTL=$(command -v kubectl || true)"
  echo "GIT=$(command -v git || true)"
  echo "GIT_HTTP_BACKEND=$(git_http_backend_path || true)"
  p="$(command -v lighttpd || true)"; [[ -n $p ]] || { [[ -x /usr/sbin/lighttpd ]] && p=/usr/sbin/lighttpd; }
  echo "LIGHTTPD=$p"
  p="$(command -v sshd || true)"; [[ -n $p ]] || { [[ -x /usr/sbin/sshd ]] && p=/usr/sbin/sshd; }
  echo "SSHD=$p"
  echo "HTPASSWD=$(command -v htpasswd || true)"
  echo "GO=$(command -v go || true)"
  echo "HELM_PYTHON=$(helm_venv_ok && echo "$HELM_PYTHON_BIN")"
  # Debian's docker CLI (not another `docker` on PATH) and the project's engine socket.
  echo "DOCKER=$( [[ -x /usr/bin/docker ]] && echo /usr/bin/docker )"
  echo "DOCKER_HOST=$( [[ -x /usr/sbin/dockerd ]] && bash "$DOCKER_ENGINE" print-env 2>/dev/null \
    | sed -n 's/^export DOCKER_HOST=//p' )"
  node_env_entries
}

# The venv exists and imports helm-sdkpy at the pinned version (loading Helm's library).
helm_venv_ok() {
  [[ -x $HELM_PYTHON_BIN ]] || return 1
  timeout 60 "$HELM_PYTHON_BIN" -c '
import sys
from importlib.metadata import version
import helm_sdkpy
helm_sdkpy.get_version()
sys.exit(version("helm-sdkpy") != sys.argv[1])
' "$HELM_SDKPY_VERSION" >/dev/null 2>&1
}

# Everything missing (packages, binaries, the cached kube-apiserver), one per line.
missing_all() {
  local line
  missing_packages | sed 's/^/package /'
  while IFS= read -r line; do
    [[ -n ${line#*=} ]] || echo "binary ${line%%=*}"
  done < <(env_entries | grep -v -e '^KUBE_APISERVER=' -e '^HELM_PYTHON=' -e '^KUBE_NODE_DIR=')
  bash "$DOCKER_ENGINE" status >/dev/null 2>&1 || echo "docker engine (not running: bash $DOCKER_ENGINE start)"
  helm_venv_ok || echo "helm-sdkpy $HELM_SDKPY_VERSION venv (missing or not working: $HELM_VENV)"
  bash "$(dirname "${BASH_SOURCE[0]}")/moto.sh" --check || echo "moto venv (missing or not working: run e2e/moto.sh)"
  kube_apiserver_ok || echo "kube-apiserver $KUBE_VERSION (missing or not working: $KUBE_APISERVER_BIN)"
  [[ $LAYER == cluster ]] || return 0
  missing_node_packages | sed 's/^/package /'
  kube_node_ok || echo "node binaries $KUBE_VERSION (missing or not working: $KUBE_NODE_DIR)"
}

# --------------------------------------------------------------------------
# --check / --print-env
# --------------------------------------------------------------------------
do_check() {
  local missing
  missing="$(missing_all)"
  if [[ -z $missing ]]; then
    log "all components present (kube-apiserver: $KUBE_APISERVER_BIN)"
    return 0
  fi
  log "missing components:"
  sed 's/^/setup:   /' <<<"$missing" >&2
  log "run: bash e2e/setup.sh"
  return 1
}

do_print_env() {
  local line name value rc=0
  while IFS= read -r line; do
    name="${line%%=*}"; value="${line#*=}"
    if [[ -z $value ]]; then
      log "missing: $name (run: bash e2e/setup.sh)"
      rc=1
      continue
    fi
    printf 'export %s=%q\n' "$name" "$value"
  done < <(env_entries)
  return $rc
}

# --------------------------------------------------------------------------
# Installation.
# --------------------------------------------------------------------------
apt_update() {
  log "apt-get update"
  timeout 900 apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update failed (Debian archive unreachable?)"
}

# Logs which of `what` (the rest: the missing packages) will be installed and updates the
# package lists; fails (nothing to do) when none is missing.
about_to_install() {
  local what=$1
  shift
  if [[ $# == 0 ]]; then
    log "$what: all present"
    return 1
  fi
  log "$what to install: $*"
  apt_update
}

# apt-get install of the given packages while policy-rc.d (exit 101 = "not allowed")
# keeps their maintainer scripts from starting system-wide daemons.
apt_install_without_starting() {
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from image-automation-rs e2e/setup.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    CREATED_POLICY_RC=1
  fi
  timeout 1800 apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "$@" >&2 \
    || die "apt-get install failed for: $*"
  if [[ $CREATED_POLICY_RC == 1 ]]; then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY_RC=0; fi
}

install_packages() {
  local missing=() p
  mapfile -t missing < <(missing_packages)
  about_to_install "Debian packages" "${missing[@]}" || return 0
  for p in "${missing[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 \
      || die "package '$p' is not available from the configured apt sources (is this Debian bookworm?)"
  done

  # The tests start their own daemons on free loopback ports: keep the
  # packages' maintainer scripts from starting system-wide etcd, prometheus,
  # docker-registry, lighttpd and sshd (policy-rc.d exit 101 = "not allowed").
  apt_install_without_starting "${missing[@]}"

  # On a systemd host the units would still start at the next boot: disable the
  # daemons this run installed (sshd excepted: the host may rely on it).
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    local unit
    for p in "${missing[@]}"; do
      case $p in
        etcd-server) unit=etcd ;;
        prometheus) unit=prometheus ;;
        docker-registry) unit=docker-registry ;;
        lighttpd) unit=lighttpd ;;
        docker.io) unit="docker.socket docker containerd" ;;
        *) continue ;;
      esac
      log "disabling system service $unit (tests run their own instances)"
      # shellcheck disable=SC2086 # one package may bring several units
      timeout 60 systemctl disable --now $unit >/dev/null 2>&1 || true
    done
  fi

  mapfile -t missing < <(missing_packages)
  [[ ${#missing[@]} == 0 ]] || die "still missing after apt-get install: ${missing[*]}"
  log "Debian packages: installed"
}

# Make `apt-get source kubernetes` work: add a deb-src entry mirroring the
# Debian bookworm entry of the existing deb822 sources (only if no deb-src for it
# is configured yet). Removed again when the script exits.
ensure_deb_src() {
  # This file name is ours: a leftover of an interrupted run is removed at exit too.
  [[ ! -f $DEB_SRC_FILE ]] || CREATED_DEB_SRC=1
  if apt-cache showsrc "$KUBE_SRC_PACKAGE" 2>/dev/null | grep -q '^Package:'; then
    return 0
  fi
  local uris="" suites="" components="" signed_by="" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # First paragraph with Types: deb, a .../debian URI (not -security) and a
    # bookworm suite; prints URIs, Suites, Components, Signed-By on four lines.
    {
      IFS= read -r uris; IFS= read -r suites; IFS= read -r components; IFS= read -r signed_by
    } < <(awk -v RS= '
      /(^|\n)Types:[^\n]*deb/ && /(^|\n)URIs:[^\n]*\/debian\/?([ \n]|$)/ && /(^|\n)Suites:[^\n]*bookworm/ {
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          l = lines[i]; k = l; sub(/:.*/, "", k); sub(/^[^:]*:[ \t]*/, "", l)
          if (k == "URIs" || k == "Suites" || k == "Components" || k == "Signed-By") v[k] = l
        }
        printf "%s\n%s\n%s\n%s\n", v["URIs"], v["Suites"], v["Components"], v["Signed-By"]
        exit
      }' "$f") || true
    [[ -z $uris ]] || break
  done
  if [[ -z $uris ]]; then
    uris=http://deb.debian.org/debian
    suites="bookworm bookworm-updates"
    components=main
    signed_by=/usr/share/keyrings/debian-archive-keyring.gpg
  fi
  log "adding deb-src entry $DEB_SRC_FILE ($uris $suites)"
  {
    echo "# temporary, from image-automation-rs e2e/setup.sh (source of kube-apiserver)"
    echo "Types: deb-src"
    echo "URIs: $uris"
    echo "Suites: $suites"
    echo "Components: ${components:-main}"
    [[ -z $signed_by ]] || echo "Signed-By: $signed_by"
  } >"$DEB_SRC_FILE"
  CREATED_DEB_SRC=1
  apt_update
  apt-cache showsrc "$KUBE_SRC_PACKAGE" 2>/dev/null | grep -q '^Package:' \
    || die "source package '$KUBE_SRC_PACKAGE' not found even with $DEB_SRC_FILE"
}

# Downloads and unpacks Debian's kubernetes source package into a build directory in the
# cache, ready for `make WHAT=cmd/...` (sets KUBE_SRC). Once per run: the kube-apiserver and
# the node's binaries share the tree (and Go's build cache in it).
KUBE_SRC=""
kube_source_tree() {
  [[ -z $KUBE_SRC ]] || return 0
  local c
  for c in go make rsync tar; do
    command -v "$c" >/dev/null 2>&1 || die "building Kubernetes needs '$c', which is missing"
  done
  local reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -d $reflect2 ]] || die "building Kubernetes needs $reflect2 (golang-github-modern-go-reflect2-dev)"
  mkdir -p "$CACHE"
  # Leftovers of an interrupted build (we hold the lock, so nobody else is building).
  for c in "$CACHE"/build.*; do
    [[ -e $c ]] || continue
    log "removing leftover build directory $c"
    chmod -R u+w "$c" 2>/dev/null || true
    rm -rf "$c"
  done
  local avail_kb
  avail_kb="$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')"
  (( avail_kb > 4 * 1024 * 1024 )) || die "building Kubernetes needs ~4 GiB free in $CACHE (only $((avail_kb / 1024)) MiB)"

  BUILD_TMP="$(mktemp -d "$CACHE/build.XXXXXX")"
  log "unpacking Debian source package '$KUBE_SRC_PACKAGE' in $BUILD_TMP"
  ensure_deb_src
  log "downloading source package $KUBE_SRC_PACKAGE"
  (cd "$BUILD_TMP" && timeout 900 apt-get "${APT_OPTS[@]}" source --download-only "$KUBE_SRC_PACKAGE" >&2) \
    || die "apt-get source --download-only $KUBE_SRC_PACKAGE failed"
  local orig
  orig="$(find "$BUILD_TMP" -maxdepth 1 -name "${KUBE_SRC_PACKAGE}_*.orig.tar.*" | head -n1)"
  [[ -n $orig ]] || die "no .orig tarball downloaded for $KUBE_SRC_PACKAGE"
  [[ $orig == *"${KUBE_VERSION#v}.orig.tar."* ]] \
    || die "Debian's $KUBE_SRC_PACKAGE source ($(basename "$orig")) is not upstream $KUBE_VERSION; update KUBE_VERSION in $0"
  log "unpacking $(basename "$orig")"
  timeout 600 tar -xf "$orig" -C "$BUILD_TMP" || die "could not unpack $orig"
  local src="$BUILD_TMP/kubernetes-${KUBE_VERSION#v}"
  [[ -d $src/cmd/kube-apiserver ]] || die "unexpected layout of $orig (no $src/cmd/kube-apiserver)"

  log "replacing vendored github.com/modern-go/reflect2 with Debian's copy ($reflect2)"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$reflect2" "$src/vendor/github.com/modern-go/reflect2"
  rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod" "$src/vendor/github.com/modern-go/reflect2/go.sum"

  # GOPATH layout, as Debian's own debian/rules does.
  mkdir -p "$src/.go/src/k8s.io" "$BUILD_TMP/home"
  ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"

  KUBE_SRC=$src
}


# make WHAT=cmd/<name> in the Kubernetes source tree <src>, within $BUILD_TIMEOUT (the
# child's PID in CHILD_PID so a signal stops it); dies with the log's tail on failure.
make_kube_binary() {
  local src=$1 name=$2 rc=0 start=$SECONDS
  (
    cd "$src"
    exec timeout "$BUILD_TIMEOUT" env -u GOFLAGS -u GO111MODULE -u GOROOT -u GOBIN \
      CGO_ENABLED=0 GOPATH="$src/.go" HOME="$BUILD_TMP/home" \
      make WHAT="cmd/$name"
  ) >"$BUILD_TMP/build-$name.log" 2>&1 </dev/null &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  if [[ $rc != 0 ]]; then
    tail -n 40 "$BUILD_TMP/build-$name.log" | sed 's/^/setup:   | /' >&2
    [[ $rc != 124 ]] || die "$name build timed out after ${BUILD_TIMEOUT}s (SETUP_BUILD_TIMEOUT)"
    die "$name build failed (exit $rc) after $((SECONDS - start))s (log tail above)"
  fi
}

build_kube_apiserver() {
  if kube_apiserver_ok; then
    log "kube-apiserver: cached at $KUBE_APISERVER_BIN ($(timeout 30 "$KUBE_APISERVER_BIN" --version))"
    return 0
  fi
  log "building kube-apiserver $KUBE_VERSION from Debian source package '$KUBE_SRC_PACKAGE'"
  kube_source_tree
  local src=$KUBE_SRC

  log "make WHAT=cmd/kube-apiserver (takes ~5-9 minutes on 2 cores; timeout ${BUILD_TIMEOUT}s)"
  local start=$SECONDS
  make_kube_binary "$src" kube-apiserver
  log "kube-apiserver build took $((SECONDS - start))s"

  local goarch built
  goarch="$(go env GOARCH)"
  built="$src/_output/local/bin/linux/$goarch/kube-apiserver"
  [[ -x $built ]] || die "build finished but $built is missing"
  local version
  version="$(timeout 30 "$built" --version)" || die "built kube-apiserver does not run"
  [[ $version == "Kubernetes ${KUBE_VERSION%.*}."* ]] || die "built kube-apiserver reports '$version', expected $KUBE_VERSION"

  # Atomic install: copy next to the final path, then rename.
  mkdir -p "$KUBE_DIR"
  cp "$built" "$KUBE_APISERVER_BIN.tmp.$$"
  chmod 755 "$KUBE_APISERVER_BIN.tmp.$$"
  mv -f "$KUBE_APISERVER_BIN.tmp.$$" "$KUBE_APISERVER_BIN"
  log "kube-apiserver installed: $KUBE_APISERVER_BIN ($version)"
}

# --------------------------------------------------------------------------
# A real node (issue 13, e2e/cluster.sh): kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy from the same source tree as kube-apiserver, and
# the pause binary from its build/pause, cached in $KUBE_NODE_DIR. Packages:
# Docker's engine for the kubelet's dockershim, the CNI plugins, what kube-proxy
# and the runc wrapper call. See shared/notes/real-node.md.
# --------------------------------------------------------------------------
NODE_PACKAGES=(
  docker.io                   # dockerd 20.10 (API 1.41), containerd, runc: the node's container engine
  containernetworking-plugins # CNI bridge, host-local, portmap (in /usr/lib/cni)
  conntrack                   # kube-proxy calls it
  iptables                    # kube-proxy's Service rules, inside the node's network namespace
  jq                          # e2e/cluster.sh's runc wrapper edits the OCI config
  gcc                         # pause binary (static)
  libc6-dev                   # static libc for the pause binary
)
KUBE_NODE_DIR="$CACHE/kube-node-$KUBE_VERSION"
KUBE_NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)

missing_node_packages() {
  local p
  for p in "${NODE_PACKAGES[@]}"; do
    pkg_installed "$p" || echo "$p"
  done
}

kube_node_ok() {
  local b out
  for b in "${KUBE_NODE_BINARIES[@]}"; do
    [[ -x $KUBE_NODE_DIR/$b ]] || return 1
    out="$(timeout 30 "$KUBE_NODE_DIR/$b" --version 2>/dev/null)" || return 1
    [[ $out == "Kubernetes ${KUBE_VERSION%.*}."* ]] || return 1
  done
  [[ -x $KUBE_NODE_DIR/pause ]]
}

node_env_entries() {
  echo "KUBE_NODE_DIR=$(kube_node_ok && echo "$KUBE_NODE_DIR")"
}

install_node_packages() {
  local missing=()
  mapfile -t missing < <(missing_node_packages)
  about_to_install "node packages" "${missing[@]}" || return 0
  # Keep the maintainer scripts from starting a system-wide dockerd/containerd: the
  # node runs its own (and dockerd would use a running system containerd instead).
  apt_install_without_starting "${missing[@]}"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    local unit
    for unit in docker.socket docker containerd; do
      timeout 60 systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
  mapfile -t missing < <(missing_node_packages)
  [[ ${#missing[@]} == 0 ]] || die "still missing after apt-get install: ${missing[*]}"
}

build_kube_node() {
  if kube_node_ok; then
    log "node binaries: cached in $KUBE_NODE_DIR"
    return 0
  fi
  log "building the node's binaries $KUBE_VERSION (${KUBE_NODE_BINARIES[*]}, pause): ~5-12 min on 2 cores, the kubelet first, the others reuse its build cache"
  kube_source_tree
  local src=$KUBE_SRC b start goarch version
  goarch="$(go env GOARCH)"
  mkdir -p "$KUBE_NODE_DIR"
  for b in "${KUBE_NODE_BINARIES[@]}"; do
    log "make WHAT=cmd/$b"
    start=$SECONDS
    make_kube_binary "$src" "$b"
    version="$(timeout 30 "$src/_output/local/bin/linux/$goarch/$b" --version)" || die "built $b does not run"
    [[ $version == "Kubernetes ${KUBE_VERSION%.*}."* ]] || die "built $b reports '$version', expected $KUBE_VERSION"
    cp "$src/_output/local/bin/linux/$goarch/$b" "$KUBE_NODE_DIR/$b.tmp.$$"
    chmod 755 "$KUBE_NODE_DIR/$b.tmp.$$"
    mv -f "$KUBE_NODE_DIR/$b.tmp.$$" "$KUBE_NODE_DIR/$b"
    log "$b installed in $KUBE_NODE_DIR ($((SECONDS - start))s)"
  done
  # The Pod sandbox's binary, built as upstream's build/pause does (VERSION as in its Makefile).
  local pause_version
  pause_version="$(sed -n 's/^TAG[ ?:]*= *//p' "$src/build/pause/Makefile" | head -n1)"
  [[ -n $pause_version ]] || die "no TAG in $src/build/pause/Makefile"
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_version-$KUBE_VERSION" -o "$KUBE_NODE_DIR/pause.tmp.$$" \
    "$src/build/pause/linux/pause.c" || die "building pause ($src/build/pause/linux/pause.c) failed"
  mv -f "$KUBE_NODE_DIR/pause.tmp.$$" "$KUBE_NODE_DIR/pause"
  echo "$pause_version" >"$KUBE_NODE_DIR/pause.version"
  log "pause $pause_version installed in $KUBE_NODE_DIR"
}

install_helm_venv() {
  if helm_venv_ok; then
    log "helm-sdkpy: $HELM_SDKPY_VERSION in $HELM_VENV"
    return 0
  fi
  [[ $(uname -m) == x86_64 ]] || die "helm-sdkpy ships Helm's library for linux-amd64 only (this is $(uname -m))"
  local python
  python="$(command -v python3 || true)"
  if [[ -z $python ]] || ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "installing python3-venv (venv + ensurepip) for the helm-sdkpy venv"
    apt_update
    timeout 900 apt-get "${APT_OPTS[@]}" install -y --no-install-recommends python3 python3-venv >&2 \
      || die "apt-get install python3 python3-venv failed"
    python="$(command -v python3)" || die "python3 still missing"
  fi
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "helm-sdkpy needs Python >= 3.10; $python is $("$python" --version 2>&1)"
  log "creating $HELM_VENV with $("$python" --version 2>&1) and installing helm-sdkpy $HELM_SDKPY_VERSION"
  rm -rf "$HELM_VENV"
  timeout 300 "$python" -m venv "$HELM_VENV" >&2 || die "python3 -m venv $HELM_VENV failed"
  timeout 600 "$HELM_PYTHON_BIN" -m pip install -q --disable-pip-version-check "cffi==$CFFI_VERSION" >&2 \
    || die "pip install cffi==$CFFI_VERSION failed (PyPI unreachable?)"
  # helm-sdkpy's only runtime dependency is cffi; it declares Python >= 3.12 but runs on 3.11.
  timeout 600 "$HELM_PYTHON_BIN" -m pip install -q --disable-pip-version-check --no-deps \
    --ignore-requires-python "helm-sdkpy==$HELM_SDKPY_VERSION" >&2 \
    || die "pip install helm-sdkpy==$HELM_SDKPY_VERSION failed (PyPI unreachable?)"
  helm_venv_ok || die "helm-sdkpy installed in $HELM_VENV but does not load"
  log "helm-sdkpy: installed in $HELM_VENV"
}

do_install() {
  [[ $(id -u) == 0 ]] || die "must run as root (installs Debian packages)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian bookworm"
  local total_start=$SECONDS
  mkdir -p "$CACHE"
  # One setup at a time per cache (e.g. parallel CI jobs on one machine).
  exec 9>"$CACHE/.setup.lock"
  if ! flock -n 9; then
    log "another setup run holds $CACHE/.setup.lock; waiting (up to 3600s)"
    flock -w 3600 9 || die "timed out waiting for $CACHE/.setup.lock"
  fi

  install_packages
  if [[ $LAYER == demo ]]; then
    command -v cargo >/dev/null 2>&1 || die "make demo needs a Rust toolchain (cargo) on PATH"
    log "demo layer done in $((SECONDS - total_start))s"
    return 0
  fi
  build_kube_apiserver
  install_helm_venv
  # moto[server] (PyPI), the AWS emulator of the cloud-identity tests, in its own venv.
  bash "$(dirname "${BASH_SOURCE[0]}")/moto.sh" || die "e2e/moto.sh failed"
  # 9>&-: dockerd outlives this script and must not inherit the lock's descriptor (it held
  # the lock for as long as it ran, and every later setup waited for it).
  bash "$DOCKER_ENGINE" start 9>&-
  # The real node (make e2e-cluster) is a layer of its own: make test does not need it.
  if [[ $LAYER == cluster ]]; then
    install_node_packages
    build_kube_node
  fi

  local missing
  missing="$(missing_all)"
  if [[ -n $missing ]]; then
    sed 's/^/setup:   missing: /' <<<"$missing" >&2
    die "setup incomplete"
  fi
  log "done in $((SECONDS - total_start))s; environment for the tests:"
  do_print_env | sed 's/^/setup:   /' >&2
}

case "${1:-}" in
  "") do_install ;;
  --demo) LAYER=demo; do_install ;;
  --cluster) LAYER=cluster; do_install ;;
  --check) do_check ;;
  --check-cluster) LAYER=cluster; do_check ;;
  --print-env) do_print_env ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown argument '$1' (use --demo, --cluster, --check, --check-cluster, --print-env or no argument)" ;;
esac
