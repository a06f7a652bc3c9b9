#!/usr/bin/env bash
# Install (if missing) and start the Docker engine for odstack's CI and development machines.
#
# Idempotent: a no-op when the engine already answers. Safe without a terminal (CI=true, no stdin).
# The engine runs with host networking only (--iptables=false --bridge=none): builds and containers
# must use `--network host` / `network_mode: host` (see docs/environment.md).
#
# Knobs (environment):
#   DOCKERD_LOG      engine log file                   (default /tmp/dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for the engine    (default 60)
#   DOCKERD_ARGS     extra dockerd arguments           (default empty)
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
DOCKERD_ARGS=${DOCKERD_ARGS:-}
# /usr/local/bin/docker (28.2, no buildx) comes first on PATH; use Debian's client explicitly.
DOCKER=/usr/bin/docker

log() { printf 'start_dockerd: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

install_packages() {
  local missing=()
  [[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  ((${#missing[@]})) || return 0

  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
  log "installing ${missing[*]} (apt-get)"
  # Keep the package's init script from starting an engine with default (bridge/iptables) settings.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  local rc=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  } || rc=$?
  ((made_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (rc=$rc)"
}

wait_for_engine() {
  local waited=0
  until engine_up; do
    if ((waited >= DOCKERD_TIMEOUT)); then
      log "last lines of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "engine did not answer within ${DOCKERD_TIMEOUT}s (see $DOCKERD_LOG)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

main() {
  install_packages
  if engine_up; then
    log "engine already running ($("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null))"
    return 0
  fi

  # An engine may be starting already (pid file of a live dockerd): wait for it instead of racing it.
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    log "dockerd (pid $pid) is starting; waiting"
  else
    [[ $(id -u) == 0 ]] || die "dockerd must be started as root"
    log "starting dockerd (log: $DOCKERD_LOG)"
    # shellcheck disable=SC2086  # DOCKERD_ARGS is a word list on purpose
    setsid /usr/sbin/dockerd --storage-driver=overlay2 --iptables=false --bridge=none $DOCKERD_ARGS \
      >"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  wait_for_engine
  log "engine ready ($("$DOCKER" version --format '{{.Server.Version}}'))"
}

main "$@"
