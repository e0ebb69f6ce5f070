#!/usr/bin/env bash
# e2e/moto.sh: install moto in server mode (PyPI `moto[server]`), the AWS emulator the
# cloud-identity tests run STS and ECR against (crates/testbed/src/moto.rs starts it).
#
#   bash e2e/moto.sh           install into the venv if missing (idempotent)
#   bash e2e/moto.sh --check   exit 0 if the venv runs moto at the pinned version
#   bash e2e/moto.sh --print-env   print MOTO_SERVER=<venv>/bin/moto_server
#
# Venv: ${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}/moto-venv
set -euo pipefail

MOTO_VERSION=5.2.6
CACHE="${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}"
MOTO_VENV="$CACHE/moto-venv"
MOTO_PYTHON="$MOTO_VENV/bin/python"

log() { echo "moto.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

moto_ok() {
  [[ -x $MOTO_VENV/bin/moto_server ]] || return 1
  timeout 60 "$MOTO_PYTHON" -c '
import sys
from importlib.metadata import version
import moto.server
sys.exit(version("moto") != sys.argv[1])
' "$MOTO_VERSION" >/dev/null 2>&1
}

install_moto() {
  if moto_ok; then
    log "moto $MOTO_VERSION in $MOTO_VENV"
    return 0
  fi
  local python
  python="$(command -v python3 || true)"
  if [[ -z $python ]] || ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "python3 with venv is missing and apt-get is not available"
    log "installing python3-venv for the moto venv"
    timeout 900 apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends python3 python3-venv >&2 \
      || die "apt-get install python3 python3-venv failed"
    python="$(command -v python3)" || die "python3 still missing"
  fi
  mkdir -p "$CACHE"
  log "creating $MOTO_VENV and installing moto[server]==$MOTO_VERSION"
  rm -rf "$MOTO_VENV"
  timeout 300 "$python" -m venv "$MOTO_VENV" >&2 || die "python3 -m venv $MOTO_VENV failed"
  timeout 900 "$MOTO_PYTHON" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 \
    || die "pip install moto[server]==$MOTO_VERSION failed (PyPI unreachable?)"
  moto_ok || die "moto installed in $MOTO_VENV but does not load"
  log "moto: installed in $MOTO_VENV"
}

case "${1:-}" in
  "") install_moto ;;
  --check) moto_ok ;;
  --print-env) echo "MOTO_SERVER=$(moto_ok && echo "$MOTO_VENV/bin/moto_server")" ;;
  *) die "unknown argument: $1" ;;
esac
