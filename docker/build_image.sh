#!/usr/bin/env bash
# Build one of the project's images with podman.
#
#   docker/build_image.sh SERVICE [TAG]
#
#   api, model                          level 3 (docker/*.Dockerfile; context: the repository root)
#   fraud                               level 4's scoring service (docker/level4/fraud.Dockerfile)
#   redis, postgres, prometheus, alertmanager
#                                       level 4's third-party services (docker/level4/services/;
#                                       context: that folder), from Debian packages on the base,
#                                       or SERVICES_FROM=official for the official images
#
# The base image comes from docker/build_base.sh (built first if missing, cached by tag).
# No registry is reachable here, so BASE_IMAGE points at that local image; pip inside the
# build reaches the package index through the host's CA bundle (mounted, PIP_CERT set).
# --format docker keeps the HEALTHCHECK (the OCI format drops it).
# Environment: BASE_IMAGE (default localhost/ml-levels-base:bookworm), HOST_CA_BUNDLE,
# WHEELS_DIR (a folder of local wheels, e.g. the CPU torch wheel; mounted when it exists),
# SERVICES_FROM (debian or official; the level-4 third-party services), DRY_RUN=1 (print the
# podman build command instead of running it).
set -euo pipefail

SERVICE="${1:?usage: docker/build_image.sh api|model|fraud|redis|postgres|prometheus|alertmanager [TAG]}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/podman/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/ml-levels-base:bookworm}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
WHEELS_DIR="${WHEELS_DIR:-/opt/wheels}"
SERVICES_FROM="${SERVICES_FROM:-debian}"

extra_args=()
case "$SERVICE" in
  api|model)
    DOCKERFILE="$HERE/$SERVICE.Dockerfile"; CONTEXT="$ROOT"; DEFAULT_TAG="localhost/level3-recsys-$SERVICE:latest" ;;
  fraud)
    DOCKERFILE="$HERE/level4/fraud.Dockerfile"; CONTEXT="$ROOT"; DEFAULT_TAG="localhost/level4-fraud:latest" ;;
  redis|postgres|prometheus|alertmanager)
    DOCKERFILE="$HERE/level4/services/$SERVICE.Dockerfile"; CONTEXT="$HERE/level4/services"
    DEFAULT_TAG="localhost/level4-$SERVICE:latest"
    extra_args=(--build-arg "SERVICES_FROM=$SERVICES_FROM") ;;
  *) echo "error: unknown service '$SERVICE' (api, model, fraud, redis, postgres, prometheus or alertmanager)" >&2
     exit 2 ;;
esac
TAG="${2:-$DEFAULT_TAG}"
# The images built from the repository root send only what they copy (their ignore file).
if [[ -f "$DOCKERFILE.dockerignore" ]]; then
  extra_args+=(--ignorefile "$DOCKERFILE.dockerignore")
fi

volumes=(-v "$HOST_CA_BUNDLE:/etc/ssl/host-ca.crt:ro")
if [[ -d "$WHEELS_DIR" ]]; then
  volumes+=(-v "$WHEELS_DIR:/wheels:ro")
fi

cmd=(podman build --format docker
  --build-arg "BASE_IMAGE=$BASE_IMAGE"
  --build-arg PIP_CERT=/etc/ssl/host-ca.crt
  "${volumes[@]}" "${extra_args[@]}"
  -f "$DOCKERFILE" -t "$TAG" "$CONTEXT")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
podman image exists "$BASE_IMAGE" || "$HERE/build_base.sh" "$BASE_IMAGE"
"${cmd[@]}"
echo "built $TAG"
