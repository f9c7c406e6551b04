#!/usr/bin/env bash
# Build one of the project's images with podman, from the repository root as context.
#
#   docker/build_image.sh api|model [TAG]
#
# The base image comes from docker/build_base.sh (built first if missing, cached by tag).
# No registry is reachable here, so BASE_IMAGE points at that local image; pip inside the
# build reaches the package index through the host's CA bundle (mounted, PIP_CERT set).
# --format docker keeps the HEALTHCHECK (the OCI format drops it).
# Environment: BASE_IMAGE (default localhost/ml-levels-base:bookworm), HOST_CA_BUNDLE,
# WHEELS_DIR (a folder of local wheels, e.g. the CPU torch wheel; mounted when it exists).
set -euo pipefail

SERVICE="${1:?usage: docker/build_image.sh api|model [TAG]}"
TAG="${2:-localhost/level3-recsys-$SERVICE:latest}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/podman/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/ml-levels-base:bookworm}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
WHEELS_DIR="${WHEELS_DIR:-/opt/wheels}"

case "$SERVICE" in
  api|model) ;;
  *) echo "error: unknown service '$SERVICE' (api or model)" >&2; exit 2 ;;
esac

podman image exists "$BASE_IMAGE" || "$HERE/build_base.sh" "$BASE_IMAGE"

volumes=(-v "$HOST_CA_BUNDLE:/etc/ssl/host-ca.crt:ro")
if [[ -d "$WHEELS_DIR" ]]; then
  volumes+=(-v "$WHEELS_DIR:/wheels:ro")
fi

podman build --format docker \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg PIP_CERT=/etc/ssl/host-ca.crt \
  "${volumes[@]}" \
  --ignorefile "$HERE/$SERVICE.Dockerfile.dockerignore" \
  -f "$HERE/$SERVICE.Dockerfile" -t "$TAG" "$ROOT"
echo "built $TAG"
