#!/usr/bin/env bash
# Build the local base image odstack/base:bookworm from Debian packages (no container registry needed).
#
# Docker Hub is unreachable on odstack's CI/dev machines, so `FROM python:3.11-slim-bookworm` cannot be
# pulled. This script debootstraps a minimal bookworm root filesystem with python3 (3.11), python3-venv
# and ca-certificates and imports it as an image; dockerfiles then build with
#   --build-arg BASE_IMAGE=odstack/base:bookworm
# Idempotent: does nothing when the image exists. Needs root, debootstrap and a running engine
# (scripts/docker/start_dockerd.sh).
#
# Knobs (environment):
#   BASE_IMAGE     image name to create          (default odstack/base:bookworm)
#   DEBIAN_MIRROR  mirror for debootstrap        (default http://deb.debian.org/debian)
#   SUITE          Debian suite                  (default bookworm)
#   FORCE=1        rebuild even if the image exists
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-odstack/base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
FORCE=${FORCE:-0}
PACKAGES=(python3 python3-venv ca-certificates)
DOCKER=/usr/bin/docker  # Debian's client; /usr/local/bin/docker comes first on PATH

log() { printf 'bootstrap_base: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -x $DOCKER ]] || die "$DOCKER missing: run scripts/docker/start_dockerd.sh first"
"$DOCKER" info >/dev/null 2>&1 || die "docker engine not answering: run scripts/docker/start_dockerd.sh first"

if [[ $FORCE != 1 ]] && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "$BASE_IMAGE exists; nothing to do (FORCE=1 rebuilds)"
  exit 0
fi
[[ $(id -u) == 0 ]] || die "debootstrap and chroot need root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing: run scripts/docker/start_dockerd.sh first"

t0=$SECONDS
ROOTFS=$(mktemp -d /tmp/odstack-rootfs.XXXXXX)
cleanup() {
  # chroot'ed apt may leave mounts behind if interrupted; never rm -rf through a mount.
  for m in proc dev/pts dev sys; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
  done
  rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE -> $ROOTFS ($DEBIAN_MIRROR)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >/tmp/odstack-debootstrap.log 2>&1 ||
  { tail -n 30 /tmp/odstack-debootstrap.log >&2; die "debootstrap failed (log: /tmp/odstack-debootstrap.log)"; }
t1=$SECONDS
log "debootstrap done in $((t1 - t0))s"

log "installing ${PACKAGES[*]} in the chroot"
# No services may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  LANG=C.UTF-8 sh -euc "
    apt-get -o APT::Sandbox::User=root update -qq
    apt-get -o APT::Sandbox::User=root install -y -qq --no-install-recommends ${PACKAGES[*]} >/dev/null
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /tmp/* \
      /usr/share/man/* /usr/share/info/* /usr/share/locale/*
    find /usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  " </dev/null
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
# Resolver settings come from the engine at run time, not from the build host.
: >"$ROOTFS/etc/resolv.conf"
"$ROOTFS/usr/bin/python3" --version >/dev/null 2>&1 || chroot "$ROOTFS" python3 --version >/dev/null ||
  die "python3 missing in the rootfs"
t2=$SECONDS
log "chroot install done in $((t2 - t1))s ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"

tar -C "$ROOTFS" --numeric-owner -c . |
  "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE + ${PACKAGES[*]}" \
    - "$BASE_IMAGE" >/dev/null
t3=$SECONDS
log "imported $BASE_IMAGE in $((t3 - t2))s; total $((t3 - t0))s;" \
  "size $("$DOCKER" image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
"$DOCKER" run --rm --network host "$BASE_IMAGE" python3 --version
