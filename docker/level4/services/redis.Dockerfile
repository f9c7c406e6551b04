# syntax=docker/dockerfile:1
# Redis for the level-4 stack (the stream broker; the Feast online store when configured).
# SERVICES_FROM=debian (default): Debian bookworm's redis-server on the project's local base
# image (docker/build_base.sh), so the stack builds with no registry reachable;
# SERVICES_FROM=official: the official image, where a registry is reachable.
ARG BASE_IMAGE=localhost/ml-levels-base:bookworm
ARG OFFICIAL_IMAGE=docker.io/library/redis:7.2-bookworm
ARG SERVICES_FROM=debian
#checkov:skip=CKV_DOCKER_7:FROM names build arguments whose defaults above are versioned tags or the local base (checkov cannot resolve them)
#checkov:skip=CKV_DOCKER_2:docker/level4/compose.yaml defines this service's healthcheck (the official images ship none either)

FROM ${BASE_IMAGE} AS debian
# Versions come from the base's Debian release (bookworm), not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
# The package's system user (its uid is assigned at install, so by name).
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
# No config file: protected mode would refuse the other containers (no password on this network).
CMD ["redis-server", "--protected-mode", "no"]

FROM ${OFFICIAL_IMAGE} AS official

# The stage the build argument names is the image.
FROM ${SERVICES_FROM}
