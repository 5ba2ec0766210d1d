#!/usr/bin/env bash
# The container engine for `make image` and the container test: docker when its daemon answers,
# else podman (installed from the distribution when missing, configured for VMs like CI's).
#   container/engine.sh ARGS...   runs the engine with ARGS, e.g. `container/engine.sh images`
# Sourced, it sets ENGINE (and CONTAINERS_CONF for podman).
set -euo pipefail
CONTAINER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${INFOGAN_CONTAINER_CACHE:-$CONTAINER_DIR/cache}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

apt_install() {
  command -v apt-get >/dev/null || { echo "engine.sh: $* missing and no apt-get here: install them" >&2; exit 1; }
  [ -n "${APT_UPDATED:-}" ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  APT_UPDATED=1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi

if [ "$ENGINE" = podman ]; then
  command -v podman >/dev/null || apt_install podman runc uidmap slirp4netns containernetworking-plugins \
    catatonit fuse-overlayfs mmdebstrap
  # Settings podman's defaults lack on VMs like CI's (hybrid cgroups, no systemd, low hard ulimits).
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    mkdir -p "$CACHE"
    CONTAINERS_CONF=$CACHE/containers.conf
    nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    {
      echo '[containers]'
      echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
      echo '[engine]'
      echo 'cgroup_manager = "cgroupfs"'
      echo 'events_logger = "file"'
      # crun refuses hybrid cgroup v1+v2 hosts; runc runs there.
      if command -v runc >/dev/null; then echo 'runtime = "runc"'; fi
    } > "$CONTAINERS_CONF"
  fi
  export CONTAINERS_CONF
fi

if [ "${BASH_SOURCE[0]}" = "$0" ]; then exec "$ENGINE" "$@"; fi
