#!/usr/bin/env bash
# Build the project's base image without a registry: debootstrap a minimal Debian
# bookworm with Python and import it into podman. Cached by tag: a second call
# with the same tag does nothing (pass --force to rebuild).
#
#   docker/build_base.sh [TAG] [--force]      default TAG: localhost/ml-levels-base:bookworm
#
# Needs root, debootstrap and podman (apt-get install podman runc debootstrap).
set -euo pipefail

TAG="localhost/ml-levels-base:bookworm"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) TAG="$arg" ;;
  esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/podman/containers.conf}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3-venv pulls in pip's wheel (ensurepip); ca-certificates lets pip verify the index.
PACKAGES="python3,python3-venv,python3-pip,ca-certificates,libgomp1"

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install -y podman runc debootstrap)" >&2; exit 2; }
done

if [[ $FORCE -eq 0 ]] && podman image exists "$TAG"; then
  echo "base image $TAG already built (cached; --force rebuilds)"
  exit 0
fi

ROOTFS="$(mktemp -d /var/tmp/ml-levels-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

echo "debootstrap bookworm (minbase + $PACKAGES) into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# Keep the image small: apt lists and caches are not needed at run time.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*

tar -C "$ROOTFS" -c . | podman import --quiet \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
echo "built base image $TAG ($(podman image inspect --format '{{.Size}}' "$TAG" | numfmt --to=iec))"
