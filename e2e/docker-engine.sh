#!/usr/bin/env bash
# e2e/docker-engine.sh: the project's own Docker engine (Debian's docker.io, dockerd 20.10).
#
#   bash e2e/docker-engine.sh start       start it unless it already answers (idempotent)
#   bash e2e/docker-engine.sh stop        stop the dockerd this script started (by its pidfile)
#   bash e2e/docker-engine.sh status      exit 0 and print the server version if it answers
#   bash e2e/docker-engine.sh print-env   print `export DOCKER_HOST=unix://...` (and DOCKER=)
#
# Everything it owns lives under ${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}/docker:
# data root, exec root, socket, pidfile and log. It never touches the host's network: no
# iptables rules, no masquerading, no docker0 bridge (containers use `--network host` or none).
# The host's own /var/run/docker.sock, if any, is not used; Debian's /usr/bin/docker and
# /usr/sbin/dockerd are called explicitly (another `docker` earlier on PATH is not ours).
#
# Environment:
#   IMAGE_AUTOMATION_CACHE  cache directory (default $HOME/.cache/image-automation-rs)
#   DOCKER_ENGINE_DIR       engine directory (default $IMAGE_AUTOMATION_CACHE/docker)
#   DOCKERD_EXTRA_ARGS      extra dockerd arguments (word-split), e.g. --add-runtime ...
set -euo pipefail

CACHE="${IMAGE_AUTOMATION_CACHE:-$HOME/.cache/image-automation-rs}"
ENGINE_DIR="${DOCKER_ENGINE_DIR:-$CACHE/docker}"
DOCKER_BIN=/usr/bin/docker
DOCKERD_BIN=/usr/sbin/dockerd
SOCKET="$ENGINE_DIR/docker.sock"
PIDFILE="$ENGINE_DIR/docker.pid"
LOG="$ENGINE_DIR/dockerd.log"
START_TIMEOUT=60

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: ERROR: %s\n' "$*" >&2; exit 1; }

docker_cli() { DOCKER_HOST="unix://$SOCKET" "$DOCKER_BIN" "$@"; }

# Server version when the engine answers on our socket; fails otherwise.
server_version() {
  [[ -S $SOCKET && -x $DOCKER_BIN ]] || return 1
  timeout 10 env DOCKER_HOST="unix://$SOCKET" "$DOCKER_BIN" version --format '{{.Server.Version}}' 2>/dev/null
}

recorded_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid="$(<"$PIDFILE")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # Only a dockerd counts: the pid may have been reused by something else.
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  echo "$pid"
}

do_status() {
  local version
  if version="$(server_version)"; then
    echo "dockerd $version at unix://$SOCKET"
    return 0
  fi
  log "not running (no answer on unix://$SOCKET)"
  return 1
}

do_start() {
  [[ -x $DOCKERD_BIN && -x $DOCKER_BIN ]] \
    || die "$DOCKERD_BIN or $DOCKER_BIN missing: install Debian's docker.io (run: make setup)"
  [[ $(id -u) == 0 ]] || die "dockerd must run as root"
  mkdir -p "$ENGINE_DIR"
  exec 8>"$ENGINE_DIR/.lock"
  flock -w 120 8 || die "timed out waiting for $ENGINE_DIR/.lock"

  local version pid
  if version="$(server_version)"; then
    log "reusing dockerd $version at unix://$SOCKET"
    return 0
  fi
  if pid="$(recorded_pid)"; then
    # Started but not answering yet (or hung): give it the start timeout, then give up.
    log "dockerd $pid is running but not answering yet; waiting"
  else
    rm -f "$PIDFILE" "$SOCKET"
    log "starting dockerd (data root $ENGINE_DIR/data, log $LOG)"
    # shellcheck disable=SC2086 # DOCKERD_EXTRA_ARGS is a word list on purpose
    setsid "$DOCKERD_BIN" \
      --data-root "$ENGINE_DIR/data" \
      --exec-root "$ENGINE_DIR/exec" \
      --pidfile "$PIDFILE" \
      --host "unix://$SOCKET" \
      --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
      --storage-driver=overlay2 \
      ${DOCKERD_EXTRA_ARGS:-} \
      >>"$LOG" 2>&1 </dev/null 8>&- &
    pid=$!
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until version="$(server_version)"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOG" | sed 's/^/docker-engine:   | /' >&2
      die "dockerd exited during start-up (log tail above, full log $LOG)"
    fi
    (( SECONDS < deadline )) || die "dockerd did not answer within ${START_TIMEOUT}s (log $LOG)"
    sleep 0.2
  done
  log "dockerd $version ready at unix://$SOCKET"
}

do_stop() {
  local pid
  if ! pid="$(recorded_pid)"; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  log "stopping dockerd $pid"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    (( SECONDS < deadline )) || die "dockerd $pid did not stop within 30s"
    sleep 0.2
  done
  rm -f "$PIDFILE" "$SOCKET"
}

do_print_env() {
  [[ -x $DOCKER_BIN ]] || { log "missing: DOCKER ($DOCKER_BIN; run: make setup)"; return 1; }
  printf 'export DOCKER=%q\n' "$DOCKER_BIN"
  printf 'export DOCKER_HOST=%q\n' "unix://$SOCKET"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  print-env|--print-env) do_print_env ;;
  cli) shift; docker_cli "$@" ;;
  -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start, stop, status, print-env)" ;;
esac
