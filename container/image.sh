#!/usr/bin/env bash
# Builds the service image from models/infogan-generator.bentomodel (`make image`):
#   container/image.sh [cpu|cuda]
# Environment: IMAGE (tag, default infogan-service:<variant>); BASE_IMAGE (default python:3.11-slim-bookworm
# when the engine can pull it, else a Debian bookworm base made here with mmdebstrap); TORCH_WHEEL (cpu: a
# local CPU torch wheel, default one in pip's find-links folder; without one the CPU build needs
# download.pytorch.org).
set -euo pipefail
VARIANT=${1:-cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/container/engine.sh"
cd "$ROOT"

MODEL=models/infogan-generator.bentomodel
if [ ! -f "$MODEL" ]; then
  echo "image.sh: no packaged model at $ROOT/$MODEL: run \`dvc repro\` (or \`python -m infogan package\`) first" >&2
  exit 1
fi
IMAGE=${IMAGE:-infogan-service:$VARIANT}
DEBIAN_BASE=localhost/infogan-debian-python:bookworm
PYPI=https://pypi.org/simple

debian_base() {  # Python from Debian's archive: no container registry needed.
  "$ENGINE" image inspect "$DEBIAN_BASE" >/dev/null 2>&1 && return
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  local sources=() tar=$CACHE/debian-python-bookworm.tar
  [ -f /etc/apt/sources.list.d/debian.sources ] && sources=(/etc/apt/sources.list.d/debian.sources)
  mkdir -p "$CACHE"
  as_root nice -n 10 mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' bookworm "$tar" "${sources[@]}"
  "$ENGINE" import --change 'CMD ["/bin/bash"]' "$tar" "$DEBIAN_BASE"
  rm -f "$tar"
}

if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
  if ! "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
      && ! timeout 600 "$ENGINE" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "image.sh: $BASE_IMAGE cannot be pulled here; using a Debian base made with mmdebstrap ($DEBIAN_BASE)"
    debian_base
    BASE_IMAGE=$DEBIAN_BASE
  fi
fi

# Wheels in container/wheels/ are offered to pip in the build: only the one this variant uses.
rm -f container/wheels/torch-*.whl
torch_args=()
case "$VARIANT" in
  cpu)
    if [ -z "${TORCH_WHEEL:-}" ]; then
      links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
      TORCH_WHEEL=$(for d in $links; do ls "$d"/torch-*+cpu-cp311-*.whl; done 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    if [ -n "$TORCH_WHEEL" ]; then
      [ -f "$TORCH_WHEEL" ] || { echo "image.sh: TORCH_WHEEL=$TORCH_WHEEL does not exist" >&2; exit 1; }
      cp "$TORCH_WHEEL" container/wheels/
      version=$(basename "$TORCH_WHEEL" | cut -d- -f2)
      torch_args=(--build-arg "TORCH_VERSION=$version" --build-arg "TORCH_INDEX_URL=$PYPI")
      echo "image.sh: torch $version from $TORCH_WHEEL"
    fi ;;
  cuda) torch_args=(--build-arg "TORCH_INDEX_URL=$PYPI") ;;  # PyPI's torch is the CUDA build
  *) echo "image.sh: unknown variant '$VARIANT' (cpu or cuda)" >&2; exit 1 ;;
esac

build_args=(--network host)
if [ "$ENGINE" = podman ]; then
  build_args+=(--format docker)  # the OCI format drops SHELL and HEALTHCHECK
  # Registries may be reached through a TLS proxy that only the host's CA bundle trusts.
  ca=/etc/ssl/certs/ca-certificates.crt
  [ -f "$ca" ] && build_args+=(-v "$ca:$ca:ro")
fi
nice -n 10 "$ENGINE" build "${build_args[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" "${torch_args[@]}" \
  -t "$IMAGE" .
rm -f container/wheels/torch-*.whl
echo "image.sh: built $IMAGE ($("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B)"
echo "run it: container/engine.sh run --rm -p 3000:3000 $IMAGE"
