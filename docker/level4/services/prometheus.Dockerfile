# syntax=docker/dockerfile:1
# Prometheus for the level-4 stack. SERVICES_FROM=debian (default): Debian bookworm's
# prometheus package on the project's local base image; SERVICES_FROM=official: the official
# image, where a registry is reachable. Both start the binary as ENTRYPOINT, so compose passes
# the same flags to either; wget answers the healthcheck in both.
ARG BASE_IMAGE=localhost/ml-levels-base:bookworm
ARG OFFICIAL_IMAGE=docker.io/prom/prometheus:v2.53.0
ARG SERVICES_FROM=debian
#checkov:skip=CKV_DOCKER_7:FROM names build arguments whose defaults above are versioned tags or the local base (checkov cannot resolve them)
#checkov:skip=CKV_DOCKER_2:docker/level4/compose.yaml defines this service's healthcheck (the official images ship none either)

FROM ${BASE_IMAGE} AS debian
# Versions come from the base's Debian release (bookworm), not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus \
    && chown prometheus:prometheus /prometheus
WORKDIR /prometheus
# The package's system user (its uid is assigned at install, so by name).
# hadolint ignore=DL3066
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

FROM ${OFFICIAL_IMAGE} AS official

# The stage the build argument names is the image.
FROM ${SERVICES_FROM}
